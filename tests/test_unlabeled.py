"""The unlabeled corpus from Debian packages: licences, split, decoding, resume, command line.

Every test makes its own tiny package trees (or .deb files); none needs the network.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from msaf_learned_ssm.errors import LearnedSSMError
from msaf_learned_ssm_training import unlabeled as u

MIN_S = 2.0  # min_duration passed to the builder: tracks of 3 s are kept, of 1 s dropped

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fakegame
Source: https://example.org/fakegame

Files: *
Copyright: 2011-2021 Jane Composer <jane@example.org>
License: GPL-2+

Files: music/theme.ogg
       music/battle.*
Copyright: Shawn Example (http://example.org)
License: CC-BY-SA-3.0

Files: sounds/*
Copyright: Brett Example
           Zeno Example
License: CC-BY-SA-4.0

Files: sounds/click.ogg
Copyright: no-copyright
License: CC0-1.0

Files: debian/*
Copyright: 2016 Packager <p@debian.org>
License: GPL-2+

License: GPL-2+
 This program is free software; you can redistribute it and/or modify
 it under the terms of the GNU General Public License as published by
 the Free Software Foundation; either version 2 of the License, or
 (at your option) any later version.
"""

# Prose, as wesnoth-1.16-music's: the work's GPL notice first, bundled parts' licences after.
PROSE_GPL = """\
This package was originally debianized by Someone <someone@example.org>.

Upstream Author: David Example <david@example.org>

Copyright (C) 2003 - 2009 by David Example <dave@example.net>
Copyright (C) 2004 - 2009 by Other Example <other@example.net>

License:
        This program is free software; you can redistribute it and/or modify
        it under the terms of the GNU General Public License version 2
        or at your option any later version.

On Debian systems, the complete text of the GNU General Public
License can be found in /usr/share/common-licenses/GPL-2 file,
later versions can be found in the same directory.

        fonts/ is Copyright (c) 2003 by Bitstream, Inc.
        Permission is hereby granted, free of charge, to any person obtaining a
        copy of the fonts accompanying this license ("Fonts")...
"""

# Prose, as singularity-music's: the CC BY-SA 3.0 legal code, packaging under GPL.
PROSE_CC_BY_SA = """\
This package was debianized by Someone <someone@example.org> on
Fri, 10 Aug 2007 11:31:36 +0300.

Upstream Authors:
\t Max Example

Copyright (C) 2007-2008,2012 Max Example

License

   THE WORK (AS DEFINED BELOW) IS PROVIDED UNDER THE TERMS OF THIS
   CREATIVE COMMONS PUBLIC LICENSE ("CCPL" OR "LICENSE").
   1. Definitions
    c. "Creative Commons Compatible License" means a license that is
       listed at http://creativecommons.org/compatiblelicenses ...
    e. "License Elements" means the following high-level license
       attributes as selected by Licensor and indicated in the title of
       this License: Attribution, ShareAlike.

Debian packaging is licensed under GPLv2 or later.
"""

PROSE_NC = """\
Copyright (C) 2010 Some Band

This work is licensed under the Creative Commons
Attribution-NonCommercial-ShareAlike 3.0 Unported License.
"""


# --------------------------------------------------------------------------------------------
# Fake packages
# --------------------------------------------------------------------------------------------


def write_tone(path: Path, seconds: float, sample_rate: int = 44100) -> None:
    """A stereo tone of ``seconds`` (format from the suffix; opus at 48 kHz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".opus":
        sample_rate = 48000
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    y = 0.3 * np.sin(2 * np.pi * 220.0 * t)
    stereo = np.stack([y, 0.5 * y], axis=1).astype(np.float32)
    if path.suffix == ".opus":
        sf.write(path, stereo, sample_rate, format="OGG", subtype="OPUS")
    else:
        sf.write(path, stereo, sample_rate)


def make_package(root: Path, name: str, files: dict, copyright_text: str,
                 section: str = "games", version: str = "1.0-1") -> Path:
    """A tree as ``dpkg-deb -R`` leaves it: DEBIAN/control, the copyright file, the files.

    ``files``: installed path -> duration (s) of a tone, or bytes written as they are.
    """
    tree = root / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nSection: {section}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test package\n")
    doc = tree / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_text)
    for rel, spec in files.items():
        path = tree / rel.lstrip("/")
        if isinstance(spec, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(spec)
        else:
            write_tone(path, spec)
    return tree


MUSIC = "/usr/share/games/fakegame"
SONGS = [f"song{i}" for i in range(8)]


@pytest.fixture
def packages(tmp_path) -> Path:
    """Two packages: fake-dep5-music (DEP-5) and fake-prose-music (prose CC BY-SA 3.0)."""
    root = tmp_path / "debs"
    files = {f"{MUSIC}/music/{s}.ogg": 3.0 for s in SONGS}
    files.update({f"{MUSIC}/music/theme.ogg": 3.0, f"{MUSIC}/music/battle.flac": 3.0,
                  f"{MUSIC}/sounds/click.ogg": 1.0, f"{MUSIC}/sounds/boom.ogg": 1.0,
                  f"{MUSIC}/music/broken.ogg": b"OggS this is not a real ogg stream" * 20})
    make_package(root, "fake-dep5-music", files, DEP5)
    make_package(root, "fake-prose-music",
                 {"/usr/share/prose/music/Long Track.opus": 3.0,
                  "/usr/share/prose/music/jingle.ogg": 1.0},
                 PROSE_CC_BY_SA, version="007-2")
    return root


def build(out: Path, root: Path, packages=("fake-dep5-music", "fake-prose-music"), **kw):
    return u.build_unlabeled_corpus(out, packages, from_dir=root, min_duration=MIN_S, **kw)


def manifest(out: Path) -> dict:
    with (out / "manifest.csv").open(newline="") as handle:
        return {row["track_id"]: row for row in csv.DictReader(handle)}


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def test_dep5_licence_is_the_last_matching_files_paragraph():
    assert u.is_dep5(DEP5)
    assert u.licence_for_file(DEP5, f"{MUSIC}/music/song1.ogg") == "GPL-2+"  # Files: *
    assert u.licence_for_file(DEP5, f"{MUSIC}/music/theme.ogg") == "CC-BY-SA-3.0"
    assert u.licence_for_file(DEP5, f"{MUSIC}/music/battle.flac") == "CC-BY-SA-3.0"
    assert u.licence_for_file(DEP5, f"{MUSIC}/sounds/boom.ogg") == "CC-BY-SA-4.0"
    assert u.licence_for_file(DEP5, f"{MUSIC}/sounds/click.ogg") == "CC0-1.0"
    # debian/* names the packaging, not a folder of the installed path
    assert u.licence_for_file(DEP5.replace("License: GPL-2+\n\nLicense:", "License: MIT\n\n"
                                           "License:"), f"{MUSIC}/music/x.ogg") == "GPL-2+"
    assert u.holder_for_file(DEP5, f"{MUSIC}/sounds/boom.ogg") == "Brett Example; Zeno Example"
    assert u.holder_for_file(DEP5, f"{MUSIC}/music/a.ogg") == "2011-2021 Jane Composer"


def test_dep5_without_files_star_gives_no_licence_for_other_files():
    text = DEP5.replace("Files: *\n", "Files: src/*\n")
    assert u.licence_for_file(text, f"{MUSIC}/music/song1.ogg") is None
    assert u.licence_for_file(text, f"{MUSIC}/music/theme.ogg") == "CC-BY-SA-3.0"


def test_dep5_licence_names_are_normalised():
    text = DEP5.replace("License: GPL-2+\n\nFiles: music", "License: GPL-2.0-or-later\n\n"
                        "Files: music")
    assert u.licence_for_file(text, f"{MUSIC}/music/song1.ogg") == "GPL-2+"
    assert u.normalise_licence("GPL-3.0+") == "GPL-3+"
    assert u.normalise_licence("LGPL-2.1-only") == "LGPL-2.1"


@pytest.mark.parametrize("text, expected", [
    (PROSE_GPL, "GPL-2+"),
    (PROSE_CC_BY_SA, "CC-BY-SA-3.0"),
    (PROSE_NC, "CC-BY-NC-SA-3.0"),
    ("Licensed under CC BY-SA 4.0 by the artist.", "CC-BY-SA-4.0"),
    ("Released under Creative Commons Attribution 3.0 Unported.", "CC-BY-3.0"),
    ("To the extent possible under law, the author has dedicated it (CC0).", "CC0-1.0"),
    ("under the terms of the GNU General Public License as published by the Free Software "
     "Foundation; version 3 dated June, 2007, or (at your option) any later version.", "GPL-3+"),
    ("the GNU General Public License version 2 as published by the Free Software "
     "Foundation.", "GPL-2"),
    ('1) You may distribute "DRASCULA" for free on any medium, provided ...',
     "Drascula-License"),
    ("All rights reserved. Free for non-commercial use.", "non-commercial"),
    ("All rights reserved.", None),
])
def test_freeform_licence_keywords(text, expected):
    assert not u.is_dep5(text)
    assert u.licence_for_file(text, "/usr/share/x/a.ogg") == expected


def test_freeform_holder():
    assert u.holder_for_file(PROSE_GPL, "/x.ogg") == "2003 - 2009 David Example"
    assert u.holder_for_file(PROSE_CC_BY_SA, "/x.ogg") == "2007-2008,2012 Max Example"
    assert u.holder_for_file("no notice here", "/x.ogg") == ""


def test_licence_allow_list():
    assert u.licence_allowed("GPL-2+")
    assert u.licence_allowed("gpl-2.0-or-later")
    assert u.licence_allowed("Drascula-License")
    assert u.licence_allowed("GPL-2+ or CC-BY-NC-3.0")
    assert u.licence_allowed("GPL-2+ with Font exception")
    assert not u.licence_allowed("GPL-2+ and CC-BY-NC-3.0")
    assert not u.licence_allowed("CC-BY-NC-SA-3.0")
    assert not u.licence_allowed("CC-BY-SA")  # version unknown
    assert not u.licence_allowed("non-commercial")
    assert not u.licence_allowed(None)


def test_main_section():
    assert u.is_main_section("games") and u.is_main_section("main/sound")
    for section in ("contrib/games", "non-free/games", "non-free-firmware/kernel", "", None):
        assert not u.is_main_section(section)


def test_track_ids_are_sanitised_and_unique():
    files = ["/usr/share/w/albums/legacy/track4.opus", "/usr/share/w/albums/aftermath/track4.opus",
             "/usr/share/w/menu.opus", "/usr/share/w/Advanced Simulacra.ogg",
             "/usr/share/w/x.ogg", "/usr/share/w/x.opus"]
    ids = u.track_ids("wesnoth-1.16+x", files)
    assert ids["/usr/share/w/menu.opus"] == "wesnoth-1.16_x__menu"
    assert ids["/usr/share/w/albums/legacy/track4.opus"] == "wesnoth-1.16_x__legacy_track4"
    assert ids["/usr/share/w/Advanced Simulacra.ogg"] == "wesnoth-1.16_x__Advanced_Simulacra"
    assert len(set(ids.values())) == len(files)
    assert all(u.sanitise_id(i) == i for i in ids.values())


def test_split_is_a_stable_hash_of_package_and_file():
    files = [f"/usr/share/g/music/t{i}.ogg" for i in range(1000)]
    splits = [u.split_of("pkg", f) for f in files]
    assert splits == [u.split_of("pkg", f) for f in reversed(files)][::-1]
    assert 0.15 < splits.count("heldout") / len(files) < 0.25
    assert u.split_of("pkg", "/a.ogg") == u.split_of("pkg", "a.ogg")


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def test_build_from_dir(packages, tmp_path):
    out = tmp_path / "out"
    summary = build(out, packages)
    rows = manifest(out)
    dep5_ids = {f"fake-dep5-music__{s}" for s in SONGS + ["theme", "battle"]}
    assert set(rows) == dep5_ids | {"fake-prose-music__Long_Track"}
    assert sorted(summary["built"]) == sorted(rows) and summary["skipped"] == []
    assert set(summary["too_short"]) == {"fake-dep5-music__click", "fake-dep5-music__boom",
                                         "fake-prose-music__jingle"}
    assert list(summary["failed"]) == ["fake-dep5-music__broken"]
    assert "broken.ogg" in summary["failed"]["fake-dep5-music__broken"]
    assert summary["licences"] == {"CC-BY-SA-3.0": 3, "GPL-2+": 8}
    assert summary["tracks"] == 11 and summary["hours"] == pytest.approx(33 / 3600, abs=1e-4)

    row = rows["fake-dep5-music__theme"]
    assert (row["package"], row["version"], row["file"], row["licence"]) == (
        "fake-dep5-music", "1.0-1", f"{MUSIC}/music/theme.ogg", "CC-BY-SA-3.0")
    assert row["copyright_holder"] == "Shawn Example (http://example.org)"
    assert rows["fake-prose-music__Long_Track"]["licence"] == "CC-BY-SA-3.0"
    assert rows["fake-prose-music__Long_Track"]["version"] == "007-2"
    for track_id, row in rows.items():
        info = sf.info(str(out / "audio" / f"{track_id}.flac"))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            22050, 1, "FLAC", "PCM_16")
        assert float(row["duration_sec"]) == pytest.approx(3.0, abs=0.01)
        assert row["split"] == u.split_of(row["package"], row["file"])

    train = (out / "train_ids.txt").read_text().split()
    held = (out / "heldout_ids.txt").read_text().split()
    assert sorted(train + held) == sorted(rows) and not set(train) & set(held)
    assert "never commit" in (out / "README.md").read_text().lower()
    assert (out / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not list(out.glob(".fetch-*")) and not list(out.rglob("*.tmp"))


def test_rerun_skips_built_tracks(packages, tmp_path):
    out = tmp_path / "out"
    first = build(out, packages)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()}
    again = build(out, packages)
    assert again["built"] == [] and sorted(again["skipped"]) == sorted(first["built"])
    assert again["tracks"] == first["tracks"] and manifest(out).keys() == set(first["built"])
    assert {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()} == before
    # a new version of a package is decoded again
    control = packages / "fake-prose-music" / "DEBIAN" / "control"
    control.write_text(control.read_text().replace("007-2", "008-1"))
    third = build(out, packages)
    assert third["built"] == ["fake-prose-music__Long_Track"]
    assert manifest(out)["fake-prose-music__Long_Track"]["version"] == "008-1"


def test_split_unchanged_when_a_track_is_removed(packages, tmp_path):
    out = tmp_path / "out"
    build(out, packages)
    held = (out / "heldout_ids.txt").read_text().split()
    train = (out / "train_ids.txt").read_text().split()
    assert held and train  # 11 tracks: both parts are populated with these names
    gone = held[0]
    (packages / "fake-dep5-music" / MUSIC.lstrip("/") / "music" /
     f"{gone.split('__')[1]}.ogg").unlink()
    summary = build(out, packages)
    assert summary["removed"] == [gone] and not (out / "audio" / f"{gone}.flac").exists()
    assert (out / "heldout_ids.txt").read_text().split() == held[1:]
    assert (out / "train_ids.txt").read_text().split() == train
    # ... and does not depend on which packages are built either
    other = tmp_path / "other"
    build(other, packages, packages=("fake-dep5-music",))
    assert set((other / "heldout_ids.txt").read_text().split()) == {
        t for t in held[1:] if t.startswith("fake-dep5-music")}


def test_non_free_licence_and_section_are_refused(tmp_path):
    root = tmp_path / "debs"
    make_package(root, "fake-nc-music", {"/usr/share/nc/song.ogg": 3.0}, PROSE_NC)
    make_package(root, "fake-nonfree-music", {"/usr/share/nf/song.ogg": 3.0}, DEP5,
                 section="non-free/games")
    make_package(root, "fake-unknown-music", {"/usr/share/uk/song.ogg": 3.0},
                 "All rights reserved.")
    out = tmp_path / "out"
    summary = build(out, root, packages=("fake-nc-music", "fake-nonfree-music",
                                         "fake-unknown-music"))
    assert summary["tracks"] == 0 and summary["built"] == []
    assert "CC-BY-NC-SA-3.0 is not in the DFSG-free allow-list" in (
        summary["licence_skipped"]["fake-nc-music:/usr/share/nc/song.ogg"])
    assert "no licence found" in summary["licence_skipped"][
        "fake-unknown-music:/usr/share/uk/song.ogg"]
    assert "non-free/games" in summary["refused"]["fake-nonfree-music"]
    assert manifest(out) == {}


def test_package_missing_from_dir_says_how_to_get_it(tmp_path):
    (tmp_path / "debs").mkdir()
    with pytest.raises(LearnedSSMError, match=r"apt-get download fake-absent-music"):
        build(tmp_path / "out", tmp_path / "debs", packages=("fake-absent-music",))


def test_missing_apt_get_says_what_to_install_or_download(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(LearnedSSMError) as info:
        u.build_unlabeled_corpus(tmp_path / "out", ["fake-absent-music"], min_duration=MIN_S)
    message = str(info.value)
    assert message.startswith("apt-get not found") and "\n" not in message
    assert "apt-get download fake-absent-music" in message and "--from-dir" in message


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(LearnedSSMError, match="not Debian package names"):
        u.build_unlabeled_corpus(tmp_path / "out", ["Bad Name;rm"])
    with pytest.raises(LearnedSSMError, match="min_duration"):
        u.build_unlabeled_corpus(tmp_path / "out", ["fake"], min_duration=float("nan"))


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_deb_files_in_from_dir_are_unpacked(packages, tmp_path):
    debs = tmp_path / "only-debs"
    debs.mkdir()
    for name in ("fake-dep5-music", "fake-prose-music"):
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(packages / name),
                        str(debs / f"{name}_1.0-1_all.deb")], check=True, capture_output=True)
    serial = build(tmp_path / "from-trees", packages)
    parallel = build(tmp_path / "from-debs", debs, n_jobs=2)
    assert sorted(parallel["built"]) == sorted(serial["built"])
    a, b = manifest(tmp_path / "from-trees"), manifest(tmp_path / "from-debs")
    assert a == b


def test_cli_command(packages, tmp_path):
    from msaf_learned_ssm.cli import main

    out = tmp_path / "out"
    shutil.rmtree(packages / "fake-dep5-music")  # the broken track lives there
    args = ["build-unlabeled", str(out), "--from-dir", str(packages), "--packages",
            "fake-prose-music", "--min-duration", str(MIN_S), "--jobs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 tracks" in result.output and "held out" in result.output
    assert "CC-BY-SA-3.0 1" in result.output
    assert (out / "audio" / "fake-prose-music__Long_Track.flac").is_file()
    missing = CliRunner().invoke(main, args[:4] + ["--packages", "fake-absent-music"])
    assert missing.exit_code == 2 and "error:" in missing.output
