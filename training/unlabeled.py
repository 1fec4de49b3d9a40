"""Build a corpus of unlabeled real music from Debian's freely licensed game-music packages.

The learned-SSM model is trained on renders of MIDI (POP909); real recorded and produced
music is needed to train with a teacher (a loss against a teacher model's outputs, no
annotations) and to measure agreement with teacher models on held-out real music.  Debian's
``main`` section only holds DFSG-free works, and a few of its packages are whole game
soundtracks (:data:`DEFAULT_PACKAGES`).  Each track is decoded to the project's audio format
and written in MSAF's layout, without references::

    OUT/audio/<package>__<name>.flac   mono, 22 050 Hz, 16-bit FLAC
    OUT/manifest.csv                   one row per track: package, version, file, licence...
    OUT/train_ids.txt, heldout_ids.txt the split (a hash of package/file: ~20 % held out)
    OUT/README.md                      what this is; never commit it
    OUT/.gitignore                     ``*``: git ignores the folder wherever it is put

Where the packages come from, in order: ``from_dir`` (``.deb`` files, or trees extracted
with ``dpkg-deb -x PKG.deb DIR/PKG``), the installed package (``dpkg-query -L``), else
``apt-get download`` (no root needed) and ``dpkg-deb -x`` in a temporary folder under
``OUT``.  With ``from_dir`` nothing is downloaded.

Licences are read from each package's ``usr/share/doc/PKG/copyright`` (machine-readable
DEP-5 or prose, :func:`licence_for_file`); a track whose licence is unknown or not in
:data:`DFSG_FREE_LICENCES` is skipped and reported, and a package outside Debian ``main``
(``contrib``, ``non-free``) is refused.  The build resumes: a track whose audio exists and
whose manifest row records the same package version and source size is not decoded again.

Command line::

    msaf-learned-ssm build-unlabeled corpora/unlabeled --jobs 2
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from msaf_learned_ssm_jams.errors import LearnedSSMError
from msaf_learned_ssm_jams.fileio import PathLike, atomic_write_text, check_writable_dir

#: Debian ``main`` packages holding whole game soundtracks (all in bookworm, ``Section: games``).
DEFAULT_PACKAGES: Tuple[str, ...] = (
    "wesnoth-1.16-music",
    "warzone2100-music",
    "hyperrogue-music",
    "planetblupi-music-ogg",
    "singularity-music",
    "drascula-music",
)

#: Suffixes (lower case) of the files decoded as tracks.
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav"})

#: Licence ids (lower-cased for comparison) a track may have to enter the corpus: the DFSG-free
#: licences of Debian ``main``.  ``Drascula-License`` is Alcachofa Soft's own licence, accepted
#: in ``main`` as DFSG-free (see the package's copyright file).  CC BY and BY-SA before 3.0 are
#: left out (Debian considers their older terms problematic), as is every NC or ND licence.
DFSG_FREE_LICENCES = frozenset(name.lower() for name in (
    "GPL-2", "GPL-2+", "GPL-3", "GPL-3+", "LGPL-2", "LGPL-2+", "LGPL-2.1", "LGPL-2.1+",
    "LGPL-3", "LGPL-3+", "AGPL-3", "AGPL-3+", "Expat", "MIT", "BSD", "BSD-2-clause",
    "BSD-3-clause", "ISC", "Zlib", "Apache-2.0", "Artistic-2.0", "OFL-1.1", "CC0-1.0",
    "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "public-domain",
    "Drascula-License",
))

#: Shortest track kept (s): structure analysis of jingles and sound effects is meaningless.
MIN_DURATION_S = 60.0

#: A track is held out when the SHA-1 of ``package/file`` is 0 modulo this (about 1 in 5).
HELDOUT_MODULUS = 5

MANIFEST_COLUMNS: Tuple[str, ...] = (
    "track_id", "package", "version", "file", "licence", "copyright_holder", "duration_sec",
    "split", "source_bytes",
)

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # Debian policy 5.6.1
_DEP5_FORMAT = re.compile(r"^format:\s*\S*copyright-format", re.IGNORECASE | re.MULTILINE)


# --------------------------------------------------------------------------------------------
# Licences (pure functions of the copyright file's text)
# --------------------------------------------------------------------------------------------


def parse_dep5(text: str) -> List[Dict[str, str]]:
    """Split a machine-readable (DEP-5) copyright file into paragraphs of fields.

    Parameters
    ----------
    text : str
        The file's text.

    Returns
    -------
    paragraphs : list of dict
        One dict per paragraph (blank-line separated), lower-cased field name -> value; a
        continued field's lines are joined with ``"\\n"`` (leading blanks removed).
    """
    paragraphs: List[Dict[str, str]] = []
    fields: Dict[str, str] = {}
    name = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, name = {}, None
        elif line[0] in " \t":
            if name is not None:
                fields[name] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            name = key.strip().lower()
            fields[name] = value.strip()
    return paragraphs


def is_dep5(text: str) -> bool:
    """Whether ``text`` is a machine-readable copyright file (a ``Format:`` line naming
    ``copyright-format``)."""
    return bool(_DEP5_FORMAT.search(text))


def _glob_matches(glob: str, path: str) -> bool:
    """Whether a DEP-5 ``Files:`` glob matches an installed path.

    Globs name paths of the source tree, which installed paths do not keep; a glob matches
    when it matches a trailing part of the path (``*.ogg`` and ``music/*`` both match
    ``usr/share/game/music/a.ogg``; ``debian/*`` does not).  Only ``*`` and ``?`` are
    wildcards (DEP-5), and ``*`` spans folders.
    """
    glob = glob.strip()
    while glob.startswith("./"):
        glob = glob[2:]
    if glob == "*":
        return True
    pattern = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                                 for c in glob) + r"\Z", re.DOTALL)
    parts = path.strip("/").split("/")
    return any(pattern.match("/".join(parts[-k:])) for k in range(1, len(parts) + 1))


def _matching_paragraph(text: str, path: str) -> Optional[Dict[str, str]]:
    """The DEP-5 paragraph that applies to ``path``: the last ``Files:`` paragraph with a
    matching glob (DEP-5's rule), else the header paragraph if it has a ``License``."""
    paragraphs = parse_dep5(text)
    match = None
    for para in paragraphs:
        if "files" in para and "license" in para:
            if any(_glob_matches(g, path) for g in para["files"].split()):
                match = para
    if match is None and paragraphs and "license" in paragraphs[0]:
        match = paragraphs[0]
    return match


def normalise_licence(name: str) -> str:
    """Spell a licence id as DEP-5 does: ``GPL-2.0+``/``GPL-2.0-or-later`` -> ``GPL-2+``,
    ``GPL-2.0-only`` -> ``GPL-2``, ``CC-BY-SA-3.0-Unported`` kept; blanks collapsed."""
    name = " ".join(name.split())
    name = re.sub(r"^((?:L|A)?GPL-\d(?:\.\d)?)-or-later$", r"\1+", name, flags=re.IGNORECASE)
    name = re.sub(r"^((?:L|A)?GPL-\d(?:\.\d)?)-only$", r"\1", name, flags=re.IGNORECASE)
    return re.sub(r"^((?:L|A)?GPL-\d)\.0(\+?)$", r"\1\2", name, flags=re.IGNORECASE)


def licence_allowed(expression: Optional[str],
                    allowed: Iterable[str] = DFSG_FREE_LICENCES) -> bool:
    """Whether a DEP-5 licence expression is within ``allowed``.

    ``A or B`` needs one allowed alternative, ``A and B`` needs all; ``A with X exception``
    counts as ``A``.  None (no licence found) is not allowed.
    """
    if not expression:
        return False
    allowed = {a.lower() for a in allowed}
    for alternative in re.split(r"\s+or\s+", expression.strip(), flags=re.IGNORECASE):
        names = re.split(r"\s+and\s+|\s*,\s*", alternative, flags=re.IGNORECASE)
        names = [re.sub(r"\s+with\s+.*$", "", n, flags=re.IGNORECASE) for n in names]
        if names and all(normalise_licence(n).lower() in allowed for n in names if n):
            return True
    return False


def _gpl_id(kind: Optional[str], version: str, rest: str) -> str:
    """``GPL-2+`` and the like from a prose GPL notice (``kind``: lesser, library, affero)."""
    prefix = {"lesser": "LGPL", "library": "LGPL", "affero": "AGPL"}.get(kind or "", "GPL")
    version = version[:-2] if version.endswith(".0") else version
    later = re.match(r"[^.;]{0,60}?\bor\b[^.;]{0,30}\blater\b", rest) or rest.startswith("+")
    return f"{prefix}-{version}{'+' if later else ''}"


def _cc_id(elements: str, version: str) -> str:
    """``CC-BY-SA-3.0`` and the like from the elements named after ``Attribution``/``CC BY``."""
    found = set(re.findall(r"noncommercial|non-commercial|noderivs|noderivatives|"
                           r"no derivatives|sharealike|share alike|\bnc\b|\bnd\b|\bsa\b",
                           elements))
    short = {"nc" if "comm" in e or e == "nc" else "nd" if "deriv" in e or e == "nd" else "sa"
             for e in found}
    return "-".join(["CC-BY"] + [e.upper() for e in ("nc", "nd", "sa") if e in short]
                    + [version])


#: Prose licence notices: (regex on the lower-cased, blank-collapsed text, id maker).
_FREEFORM_PATTERNS = (
    (r"\bgnu (?:(lesser|library|affero) )?general public license,?(?: as published by the "
     r"free software foundation;?)?(?:,? either)? (?:version|v) ?(\d(?:\.\d)?)(.{0,100})",
     lambda m: _gpl_id(m.group(1), m.group(2), m.group(3))),
    (r"\b(l|a)?gpl[- ]?v?(\d(?:\.\d)?)(.{0,40})",
     lambda m: _gpl_id({"l": "lesser", "a": "affero"}.get(m.group(1) or ""), m.group(2),
                       re.sub(r"^-or-later", " or later", m.group(3)))),
    (r"\battribution((?:[- ](?:noncommercial|non-commercial|noderivs|noderivatives|"
     r"no derivatives|sharealike|share alike))*)[- ](\d\.\d)\b",
     lambda m: _cc_id(m.group(1), m.group(2))),
    (r"\bcc[- ]by((?:[- ](?:nc|nd|sa))*)[- ](\d\.\d)\b",
     lambda m: _cc_id(m.group(1), m.group(2))),
    # The legal code of CC BY-SA 3.0 names its elements in its definitions; only 3.0 defines
    # a "Creative Commons Compatible License".
    (r'"license elements" means the following high-level license attributes as selected by '
     r"licensor and indicated in the title of this license: attribution, sharealike",
     lambda m: "CC-BY-SA-3.0" if "creative commons compatible license" in m.string
     else "CC-BY-SA"),
    (r"\bcc0\b|\bcreative commons zero\b", lambda m: "CC0-1.0"),
    (r'\byou may distribute "?drascula"?', lambda m: "Drascula-License"),
    (r"\bapache license,? version 2\.0\b", lambda m: "Apache-2.0"),
    (r"\bpermission is hereby granted, free of charge, to any person", lambda m: "Expat"),
    (r"\bredistribution and use in source and binary forms\b", lambda m: "BSD"),
    (r"\bnon-?commercial\b", lambda m: "non-commercial"),
)


def freeform_licence(text: str) -> Optional[str]:
    """The main licence of a prose (not DEP-5) copyright file, by keywords.

    The licence named first is taken: prose copyright files state the work's licence before
    those of bundled parts and of the Debian packaging.

    Parameters
    ----------
    text : str
        The copyright file's text.

    Returns
    -------
    licence : str or None
        A DEP-5 style id (``GPL-2+``, ``CC-BY-SA-3.0``, ``CC0-1.0``, ``Expat``,
        ``Drascula-License``, ``CC-BY-NC-SA-3.0``, ``non-commercial``...), None if no notice
        is recognised.
    """
    flat = " ".join(text.lower().split())
    best: Optional[Tuple[int, str]] = None
    for pattern, make in _FREEFORM_PATTERNS:
        match = re.search(pattern, flat)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), make(match))
    return best[1] if best else None


def licence_for_file(text: str, path: str) -> Optional[str]:
    """The licence id that applies to one file of a package, from its copyright file.

    Parameters
    ----------
    text : str
        The package's ``usr/share/doc/PKG/copyright``.
    path : str
        The file's installed path (``/usr/share/...``).

    Returns
    -------
    licence : str or None
        DEP-5: the ``License:`` short name of the last ``Files:`` paragraph whose glob
        matches (on a trailing part of ``path``, ``Files: *`` matching all), normalised
        (:func:`normalise_licence`); prose: :func:`freeform_licence`.  None if unknown.
    """
    if not is_dep5(text):
        return freeform_licence(text)
    para = _matching_paragraph(text, path)
    if para is None or not para["license"].splitlines()[0].strip():
        return None
    return normalise_licence(para["license"].splitlines()[0])


def _strip_holder(text: str) -> str:
    text = re.sub(r"<[^>]*>", "", text)
    text = re.sub(r"^(?:\(c\)|©)\s*", "", text.strip(), flags=re.IGNORECASE)
    return " ".join(text.replace(" by ", " ").split()).strip(" ,;")


def holder_for_file(text: str, path: str) -> str:
    """The copyright holder(s) of one file of a package, ``""`` if not easily found.

    DEP-5: the ``Copyright:`` field of the paragraph that applies (lines joined by ``; ``);
    prose: the first ``Copyright (C) YEARS NAME`` line.  E-mail addresses are left out.
    """
    if is_dep5(text):
        para = _matching_paragraph(text, path)
        lines = (para or {}).get("copyright", "").splitlines()
        return "; ".join(h for h in (_strip_holder(line) for line in lines) if h)
    match = re.search(r"^\s*copyright\s*(?:\(c\)|©)\s*(.+)$|^\s*copyright\s+(\d{4}.+)$",
                      text, flags=re.IGNORECASE | re.MULTILINE)
    return _strip_holder(match.group(1) or match.group(2)) if match else ""


def is_main_section(section: Optional[str]) -> bool:
    """Whether a Debian ``Section`` value is in the ``main`` archive area: ``games`` or
    ``main/games``, not ``contrib/games``, ``non-free/games``, ``non-free-firmware/...``."""
    if not section or not section.strip():
        return False
    area, _, _ = section.strip().rpartition("/")
    return area in ("", "main")


# --------------------------------------------------------------------------------------------
# Packages: from a folder, the system, or apt-get download
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageSource:
    """One Debian package whose files can be read.

    ``root``: the folder the package's paths are relative to (``/`` when installed);
    ``files``: installed paths (``/usr/...``) of its audio files; ``origin``: ``"from-dir"``,
    ``"installed"`` or ``"downloaded"``.
    """

    name: str
    version: str
    section: str
    root: Path
    files: Tuple[str, ...]
    copyright_text: str
    origin: str

    def path_of(self, file: str) -> Path:
        """Where the package's ``file`` (``/usr/...``) is on this machine."""
        return self.root / file.lstrip("/")


def _run(cmd: Sequence[str], cwd: Optional[PathLike] = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)


def control_fields(text: str) -> Dict[str, str]:
    """Fields of the first paragraph of a Debian control text (``dpkg-deb -f``,
    ``apt-cache show``, ``DEBIAN/control``): field name -> first-line value."""
    paragraphs = parse_dep5(text)
    return {k: v.splitlines()[0] if v else "" for k, v in (paragraphs[0] if paragraphs
                                                           else {}).items()}


def deb_fields(deb: PathLike) -> Dict[str, str]:
    """Control fields of a ``.deb`` (``dpkg-deb -f``); ``{}`` if dpkg-deb is missing or fails."""
    if shutil.which("dpkg-deb") is None:
        return {}
    proc = _run(["dpkg-deb", "-f", str(deb)])
    return control_fields(proc.stdout) if proc.returncode == 0 else {}


def changelog_version(tree: Path, package: str) -> Optional[str]:
    """The version in the first line of ``usr/share/doc/PKG/changelog.Debian.gz``."""
    path = tree / "usr" / "share" / "doc" / package / "changelog.Debian.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError:
        return None
    match = re.match(r"^\S+ \(([^)]+)\)", first)
    return match.group(1) if match else None


def apt_section(package: str, version: Optional[str]) -> Optional[str]:
    """``Section`` of ``package`` (at ``version`` if listed) in the apt lists, if known."""
    if shutil.which("apt-cache") is None:
        return None
    proc = _run(["apt-cache", "show", package])
    if proc.returncode != 0:
        return None
    records = [control_fields(p) for p in re.split(r"\n\s*\n", proc.stdout) if p.strip()]
    same = [r for r in records if version is None or r.get("version") == version]
    return (same or records or [{}])[0].get("section")


def audio_files(root: Path) -> List[str]:
    """Installed paths (``/usr/...``) of the audio files of an extracted package tree,
    documentation and symbolic links left out."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (path.suffix.lower() in AUDIO_SUFFIXES and path.is_file() and not path.is_symlink()
                and not rel.startswith("usr/share/doc/")):
            found.append("/" + rel)
    return found


def _read_copyright(root: Path, package: str) -> str:
    path = root / "usr" / "share" / "doc" / package / "copyright"
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LearnedSSMError(f"{path}: cannot read the package's copyright file "
                              f"({exc.strerror or type(exc).__name__})") from None


def tree_source(package: str, tree: Path, deb: Optional[Path], origin: str) -> PackageSource:
    """A :class:`PackageSource` from a tree extracted with ``dpkg-deb -x`` (or ``-R``).

    Version and section come from ``tree/DEBIAN/control``, else the ``.deb`` beside it,
    else the tree's changelog and the apt lists.
    """
    control = tree / "DEBIAN" / "control"
    fields = control_fields(control.read_text(errors="replace")) if control.is_file() else {}
    fields = fields or (deb_fields(deb) if deb is not None else {})
    version = fields.get("version") or changelog_version(tree, package)
    tree_version = changelog_version(tree, package)
    if deb is not None and tree_version and version and tree_version != version:
        raise LearnedSSMError(f"{tree}: holds {package} {tree_version} but {deb.name} is "
                              f"{version}: extract the .deb again (dpkg-deb -x)")
    section = fields.get("section") or apt_section(package, version)
    return PackageSource(package, version or "unknown", section or "", tree,
                         tuple(audio_files(tree)), _read_copyright(tree, package), origin)


def _local_candidates(from_dir: Path, package: str) -> Tuple[Optional[Path], Optional[Path]]:
    """The extracted tree and the ``.deb`` of ``package`` in ``from_dir`` (None if absent)."""
    debs = sorted(p for p in from_dir.glob(f"{package}_*.deb") if p.name.split("_")[0] == package)
    if len(debs) > 1:
        raise LearnedSSMError(f"{from_dir}: several .deb files of {package} "
                              f"({', '.join(d.name for d in debs)}): keep one")
    folders = [from_dir] + sorted(p for p in from_dir.iterdir() if p.is_dir())
    trees = [d for d in folders if (d / "usr" / "share" / "doc" / package).is_dir()]
    if len(trees) > 1:
        raise LearnedSSMError(f"{from_dir}: several extracted trees of {package} "
                              f"({', '.join(str(t) for t in trees)}): keep one")
    for tree in trees:
        docs = sorted(p.name for p in (tree / "usr" / "share" / "doc").iterdir())
        if len(docs) > 1:
            raise LearnedSSMError(f"{tree}: holds several packages ({', '.join(docs)}), whose "
                                  "files cannot be told apart: extract each .deb into its own "
                                  "folder (dpkg-deb -x PKG.deb DIR/PKG)")
    return (trees[0] if trees else None), (debs[0] if debs else None)


def installed_source(package: str) -> Optional[PackageSource]:
    """The installed ``package`` (``dpkg-query``), or None if it is not installed."""
    if not Path("/usr/share/doc", package).is_dir() or shutil.which("dpkg-query") is None:
        return None
    proc = _run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Version}\t${Section}",
                 package])
    status, _, rest = proc.stdout.partition("\t")
    if proc.returncode != 0 or not status.startswith("ii"):
        return None
    version, _, section = rest.partition("\t")
    listing = _run(["dpkg-query", "-L", package]).stdout.splitlines()
    files = sorted(f for f in listing if Path(f).suffix.lower() in AUDIO_SUFFIXES
                   and Path(f).is_file() and not Path(f).is_symlink()
                   and not f.startswith("/usr/share/doc/"))
    return PackageSource(package, version, section or apt_section(package, version) or "",
                         Path("/"), tuple(files), _read_copyright(Path("/"), package),
                         "installed")


def _require(tool: str, message: str) -> None:
    if shutil.which(tool) is None:
        raise LearnedSSMError(f"{tool} not found: {message}")


def extract_deb(deb: Path, dest: Path) -> None:
    """``dpkg-deb -x deb dest``; LearnedSSMError naming the file if it fails."""
    _require("dpkg-deb", f"cannot unpack {deb.name}: install dpkg (apt-get install dpkg), or "
                         f"unpack it elsewhere with `dpkg-deb -x {deb.name} DIR/PKG` and pass "
                         "--from-dir DIR")
    proc = _run(["dpkg-deb", "-x", str(deb), str(dest)])
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["dpkg-deb failed"])[-1]
        raise LearnedSSMError(f"{deb}: cannot unpack: {reason}")


def download_packages(packages: Sequence[str], workdir: Path) -> Dict[str, Path]:
    """``apt-get download`` the packages into ``workdir``; package -> ``.deb``.

    Raises
    ------
    LearnedSSMError
        apt-get is missing or the download fails, with how to get the files otherwise.
    """
    names = " ".join(packages)
    how = (f"download them with `apt-get download {names}` (no root needed) on a Debian or "
           "Ubuntu machine, or from https://packages.debian.org/bookworm/PKG, into a folder "
           "DIR and pass --from-dir DIR")
    _require("apt-get", f"cannot download the Debian packages {names}: {how}")
    proc = _run(["apt-get", "download", *packages], cwd=workdir)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("E:")]
        reason = "; ".join(errors) or (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise LearnedSSMError(f"apt-get download {names} failed ({reason}): run "
                              f"`apt-get update` first, or {how}")
    debs = {}
    for package in packages:
        found = sorted(workdir.glob(f"{package}_*.deb"))
        if not found:
            raise LearnedSSMError(f"apt-get download {package} wrote no .deb in {workdir}")
        debs[package] = found[-1]
    return debs


def _unpacked_source(package: str, deb: Path, workdir: Path, origin: str) -> PackageSource:
    """Unpack ``deb`` under ``workdir`` and read it as a tree."""
    fields = deb_fields(deb)
    tree = workdir / f"tree-{package}"
    extract_deb(deb, tree)
    source = tree_source(package, tree, None, origin)
    return PackageSource(package, fields.get("version") or source.version,
                         fields.get("section") or source.section, tree, source.files,
                         source.copyright_text, origin)


def resolve_packages(packages: Sequence[str], from_dir: Optional[PathLike],
                     workdir: Path) -> List[PackageSource]:
    """Find, unpack or download each package (see the module's docstring for the order).

    Parameters
    ----------
    packages : sequence of str
        Debian package names.
    from_dir : path-like or None
        Folder of ``.deb`` files and/or extracted trees; when given, nothing is downloaded.
    workdir : Path
        Temporary folder for downloads and unpacked ``.deb`` files.

    Returns
    -------
    sources : list of PackageSource
        In the order of ``packages``.

    Raises
    ------
    LearnedSSMError
        A package cannot be found (with ``from_dir``) or fetched, or a tool is missing.
    """
    found: Dict[str, PackageSource] = {}
    missing = []
    for package in packages:
        tree, deb = _local_candidates(Path(from_dir), package) if from_dir else (None, None)
        if tree is not None:
            found[package] = tree_source(package, tree, deb, "from-dir")
        elif deb is not None:
            found[package] = _unpacked_source(package, deb, workdir, "from-dir")
        else:
            installed = installed_source(package)
            if installed is not None:
                found[package] = installed
            else:
                missing.append(package)
    if missing and from_dir:
        names = " ".join(missing)
        raise LearnedSSMError(f"{from_dir}: no .deb or extracted tree (usr/share/doc/PKG) of "
                              f"{', '.join(missing)}, and not installed: run `apt-get download "
                              f"{names}` in {from_dir}, or leave --from-dir out to download")
    if missing:
        for package, deb in download_packages(missing, workdir).items():
            found[package] = _unpacked_source(package, deb, workdir, "downloaded")
            deb.unlink()
    return [found[p] for p in packages]


# --------------------------------------------------------------------------------------------
# Tracks: ids, split, decoding
# --------------------------------------------------------------------------------------------


def sanitise_id(text: str) -> str:
    """Letters, digits, ``.``, ``-`` and ``_`` only (other runs become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "track"


def track_ids(package: str, files: Sequence[str]) -> Dict[str, str]:
    """Track id ``<package>__<name>`` of each file of a package, unique within it.

    ``name`` is the file's stem; files whose stems clash get their parent folders prefixed
    (``albums_legacy_track4``) until they differ, the suffix last, then a hash.  The id of a
    file depends only on the files whose names clash with it.

    Parameters
    ----------
    package : str
    files : sequence of str
        Paths in the package (``/usr/...``).

    Returns
    -------
    ids : dict
        file -> track id.
    """
    def candidates(file: str) -> List[str]:
        pure = PurePosixPath(file.lstrip("/"))
        parts = pure.with_suffix("").parts
        names = ["_".join(parts[-k:]) for k in range(1, len(parts) + 1)]
        return [sanitise_id(n) for n in names] + [sanitise_id(pure.as_posix())]

    options = {f: candidates(f) for f in files}
    level = {f: 0 for f in files}
    while True:
        groups: Dict[str, List[str]] = defaultdict(list)
        for f in files:
            groups[options[f][level[f]]].append(f)
        clashing = [f for group in groups.values() if len(group) > 1 for f in group]
        movable = [f for f in clashing if level[f] + 1 < len(options[f])]
        if not movable:
            break
        for f in movable:
            level[f] += 1
    prefix = sanitise_id(package)
    ids = {f: f"{prefix}__{options[f][level[f]]}" for f in files}
    counts = Counter(ids.values())
    return {f: (i if counts[i] == 1 else f"{i}_{hashlib.sha1(f.encode()).hexdigest()[:8]}")
            for f, i in ids.items()}


def split_of(package: str, file: str, modulus: int = HELDOUT_MODULUS) -> str:
    """``"heldout"`` or ``"train"`` for a track, by the SHA-1 of ``package/file``.

    Stable: it depends on nothing but the package name and the file's path in it, so the
    same tracks stay held out whichever packages or tracks are built.
    """
    key = f"{package}/{file.lstrip('/')}".encode("utf-8")
    return "heldout" if int(hashlib.sha1(key).hexdigest(), 16) % modulus == 0 else "train"


def _header_duration(path: Path) -> Optional[float]:
    """Duration (s) in the file's header, None if libsndfile cannot read it."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - decided by decoding instead
        return None
    return float(info.frames) / info.samplerate if info.samplerate > 0 else None


def decode_track(source: PathLike, target: PathLike, sample_rate: int = 22050,
                 min_duration: float = MIN_DURATION_S) -> Tuple[str, float, str]:
    """Decode one audio file to mono ``sample_rate`` Hz 16-bit FLAC at ``target``, atomically.

    Decoding and resampling are :func:`msaf_learned_ssm.audio.load_audio`'s (libsndfile
    reads Ogg Vorbis, Opus, FLAC, WAV, MP3; soxr resamples); a track whose peak exceeds
    :data:`~msaf_learned_ssm_training.build_pop909.PEAK_LIMIT` after the lossy decoding is
    scaled down, not clipped.

    Parameters
    ----------
    source, target : path-like
    sample_rate : int
        Output rate in Hz.
    min_duration : float
        Shortest duration kept (s); a shorter file is not written.

    Returns
    -------
    status : {"built", "too_short", "failed"}
    duration : float
        Seconds (0 when failed).
    reason : str
        Why it failed, ``""`` otherwise.  Never raises.
    """
    from msaf_learned_ssm.audio import load_audio

    from .build_pop909 import peak_safe, write_flac_atomic

    try:
        header = _header_duration(Path(source))
        if header is not None and header < min_duration:
            return "too_short", header, ""
        y = load_audio(source, sample_rate, n_threads=1)
        duration = y.shape[0] / float(sample_rate)
        if duration < min_duration:
            return "too_short", duration, ""
        y, _ = peak_safe(y)
        write_flac_atomic(target, y, sample_rate)
        return "built", duration, ""
    except Exception as exc:  # noqa: BLE001 - every failure is reported by the caller
        return "failed", 0.0, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Manifest and corpus files
# --------------------------------------------------------------------------------------------


def read_manifest(path: Path) -> Dict[str, Dict[str, str]]:
    """Rows of an existing ``manifest.csv`` by track id (``{}`` if there is none)."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
            rows = {row["track_id"]: row for row in reader} if not missing else {}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LearnedSSMError(f"{path}: cannot read the manifest ({exc})") from None
    if missing:
        raise LearnedSSMError(f"{path}: not a build-unlabeled manifest (no column "
                              f"{', '.join(sorted(missing))}); move it away to rebuild")
    return rows


def write_manifest(path: Path, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the manifest atomically, rows sorted by track id."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for track_id in sorted(rows):
        writer.writerow({c: rows[track_id].get(c, "") for c in MANIFEST_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def corpus_readme(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Text of ``OUT/README.md``: what the folder is, never to be committed, a table."""
    table = defaultdict(lambda: [0, 0.0, 0, set(), ""])
    for row in rows.values():
        entry = table[row["package"]]
        entry[0] += 1
        entry[1] += float(row["duration_sec"]) / 3600.0
        entry[2] += row["split"] == "heldout"
        entry[3].add(row["licence"])
        entry[4] = row["version"]
    lines = [
        "# Unlabeled real music (Debian game soundtracks)", "",
        "Built by `msaf-learned-ssm build-unlabeled` from Debian `main` packages (DFSG-free "
        "licences only): mono 22 050 Hz 16-bit FLAC in `audio/`, one row per track in "
        "`manifest.csv` (package, version, file in the package, licence, copyright holder, "
        "duration, split), the split in `train_ids.txt` and `heldout_ids.txt` (a fixed hash "
        "of package/file). There are no references: the tracks are for training against a "
        "teacher model and for measuring agreement with teachers on held-out real music.", "",
        "**Never commit this folder** (its `.gitignore` ignores everything in it): the tracks "
        "keep their own licences (GPL, CC BY-SA, ...), whose attribution and source terms a "
        "repository copy would have to meet. Rebuild it with the command instead.", "",
        "| package | version | tracks | hours | held out | licences |",
        "|---|---|---|---|---|---|",
    ]
    for package in sorted(table):
        n, hours, held, licences, version = table[package]
        lines.append(f"| {package} | {version} | {n} | {hours:.2f} | {held} | "
                     f"{', '.join(sorted(licences))} |")
    return "\n".join(lines) + "\n"


def write_corpus_files(out: Path, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Manifest, id lists, README and ``.gitignore`` of the corpus, each atomically."""
    write_manifest(out / "manifest.csv", rows)
    for split, name in (("train", "train_ids.txt"), ("heldout", "heldout_ids.txt")):
        ids = sorted(t for t, row in rows.items() if row["split"] == split)
        atomic_write_text(out / name, "".join(f"{t}\n" for t in ids))
    atomic_write_text(out / "README.md", corpus_readme(rows))
    atomic_write_text(out / ".gitignore", "# never commit this corpus (see README.md)\n*\n")


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


class TrackJob(NamedTuple):
    """One track to decode, with the manifest row it gets once built."""

    source: str
    target: str
    row: Dict[str, Any]


def plan_tracks(sources: Sequence[PackageSource], existing: Mapping[str, Mapping[str, str]],
                audio_dir: Path) -> Tuple[List[TrackJob], Dict[str, Dict[str, Any]],
                                          Dict[str, str]]:
    """Decide, per track of ``sources``, whether to decode it, keep it, or skip its licence.

    Returns
    -------
    jobs : list of TrackJob
        Tracks to decode.
    kept : dict
        Track id -> manifest row of tracks already built from the same version and source
        size (their audio exists).
    licence_skipped : dict
        ``package:/file`` -> reason, for tracks whose licence is unknown or not allowed.
    """
    jobs, kept, licence_skipped = [], {}, {}
    for src in sources:
        ids = track_ids(src.name, src.files)
        for file in src.files:
            licence = licence_for_file(src.copyright_text, file)
            if not licence_allowed(licence):
                licence_skipped[f"{src.name}:{file}"] = (
                    f"licence {licence} is not in the DFSG-free allow-list" if licence
                    else "no licence found for it in the package's copyright file")
                continue
            size = src.path_of(file).stat().st_size
            row = {"track_id": ids[file], "package": src.name, "version": src.version,
                   "file": file, "licence": licence,
                   "copyright_holder": holder_for_file(src.copyright_text, file),
                   "split": split_of(src.name, file), "source_bytes": str(size)}
            target = audio_dir / f"{ids[file]}.flac"
            old = existing.get(ids[file])
            if (old and target.is_file() and all(str(old[k]) == row[k] for k in
                                                 ("package", "version", "file", "source_bytes"))):
                kept[ids[file]] = dict(old, **{k: row[k] for k in ("licence", "split",
                                                                   "copyright_holder")})
            else:
                jobs.append(TrackJob(str(src.path_of(file)), str(target), row))
    return jobs, kept, licence_skipped


def _decode_all(jobs: Sequence[TrackJob], rows: Dict[str, Dict[str, Any]], out: Path,
                sample_rate: int, min_duration: float, n_jobs: int
                ) -> Dict[str, Tuple[str, float, str]]:
    """Decode the jobs (in ``n_jobs`` processes), adding each built track to ``rows`` and
    rewriting the manifest as tracks finish, so that a killed build resumes."""
    from tqdm import tqdm

    results: Dict[str, Tuple[str, float, str]] = {}
    bar = tqdm(total=len(jobs), desc="unlabeled", unit="track",
               mininterval=0.1 if sys.stderr.isatty() else 10.0)

    def finish(job: TrackJob, result: Tuple[str, float, str]) -> None:
        results[job.row["track_id"]] = result
        if result[0] == "built":
            rows[job.row["track_id"]] = dict(job.row, duration_sec=f"{result[1]:.3f}")
            write_manifest(out / "manifest.csv", rows)
        bar.update()

    args = (sample_rate, min_duration)
    try:
        if n_jobs <= 1:
            for job in jobs:
                finish(job, decode_track(job.source, job.target, *args))
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                futures = {pool.submit(decode_track, j.source, j.target, *args): j for j in jobs}
                for fut in as_completed(futures):
                    try:
                        result = fut.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                        result = ("failed", 0.0, f"{type(exc).__name__}: {exc}")
                    finish(futures[fut], result)
    finally:
        bar.close()
    return results


def _check_arguments(packages: Sequence[str], min_duration: float, n_jobs: int,
                     sample_rate: int) -> List[str]:
    packages = [p.strip() for p in packages if p.strip()]
    if not packages:
        raise LearnedSSMError("no package to build from: name at least one")
    bad = [p for p in packages if not _PACKAGE_NAME.match(p)]
    if bad:
        raise LearnedSSMError(f"not Debian package names: {', '.join(bad)}")
    if not (math.isfinite(min_duration) and min_duration >= 0):
        raise LearnedSSMError(f"min_duration must be a number of seconds >= 0, got {min_duration}")
    if int(n_jobs) < 1 or int(sample_rate) <= 0:
        raise LearnedSSMError(f"n_jobs must be >= 1 and sample_rate > 0 (got {n_jobs}, "
                              f"{sample_rate})")
    return list(dict.fromkeys(packages))


def _summary(rows: Mapping[str, Mapping[str, Any]], kept: Mapping[str, Any],
             results: Mapping[str, Tuple[str, float, str]], licence_skipped: Dict[str, str],
             refused: Dict[str, str], removed: List[str]) -> Dict[str, Any]:
    hours = sum(float(r["duration_sec"]) for r in rows.values()) / 3600.0
    held = [r for r in rows.values() if r["split"] == "heldout"]
    return {
        "built": sorted(t for t, r in results.items() if r[0] == "built"),
        "skipped": sorted(kept),
        "too_short": {t: round(r[1], 3) for t, r in sorted(results.items())
                      if r[0] == "too_short"},
        "failed": {t: r[2] for t, r in sorted(results.items()) if r[0] == "failed"},
        "licence_skipped": licence_skipped,
        "refused": refused,
        "removed": removed,
        "licences": dict(sorted(Counter(r["licence"] for r in rows.values()).items())),
        "packages": dict(sorted(Counter(r["package"] for r in rows.values()).items())),
        "tracks": len(rows),
        "heldout": len(held),
        "hours": hours,
        "heldout_hours": sum(float(r["duration_sec"]) for r in held) / 3600.0,
    }


def build_unlabeled_corpus(out_dir: PathLike, packages: Sequence[str] = DEFAULT_PACKAGES,
                           from_dir: Optional[PathLike] = None,
                           min_duration: float = MIN_DURATION_S, n_jobs: int = 1,
                           sample_rate: int = 22050) -> Dict[str, Any]:
    """Build (or resume) the unlabeled corpus in ``out_dir`` from Debian packages.

    Parameters
    ----------
    out_dir : path-like
        Corpus root, created if needed.
    packages : sequence of str
        Debian package names (default :data:`DEFAULT_PACKAGES`).
    from_dir : path-like, optional
        Folder of ``.deb`` files and/or trees extracted with ``dpkg-deb -x`` (one folder
        per package); with it, nothing is downloaded.
    min_duration : float
        Shortest track kept, in seconds.
    n_jobs : int
        Decoding processes (1 decodes in this process).
    sample_rate : int
        Output rate in Hz.

    Returns
    -------
    summary : dict
        ``built``, ``skipped`` (already built), ``removed`` (track ids); ``too_short`` (id ->
        s); ``failed`` (id -> reason); ``licence_skipped`` (``package:/file`` -> reason);
        ``refused`` (package -> reason, not in Debian main); ``licences`` and ``packages``
        (tracks of the corpus by licence and package); ``tracks``, ``heldout`` (counts),
        ``hours``, ``heldout_hours``.

    Raises
    ------
    LearnedSSMError
        Bad arguments, an unwritable ``out_dir``, a manifest of something else, or packages
        that cannot be found or fetched (the message says how to get them).
    """
    packages = _check_arguments(packages, min_duration, n_jobs, sample_rate)
    out = check_writable_dir(out_dir, "corpus")
    audio_dir = out / "audio"
    audio_dir.mkdir(exist_ok=True)
    rows = read_manifest(out / "manifest.csv")
    workdir = Path(tempfile.mkdtemp(prefix=".fetch-", dir=out))
    try:
        sources = resolve_packages(packages, from_dir, workdir)
        refused = {s.name: f"Debian section {s.section!r} is not in main" if s.section else
                   "cannot tell its Debian section (put its .deb beside the extracted tree)"
                   for s in sources if not is_main_section(s.section)}
        sources = [s for s in sources if s.name not in refused]
        jobs, kept, licence_skipped = plan_tracks(sources, rows, audio_dir)
        built_here = {s.name for s in sources}
        # Rows of the packages built now that are not kept (to be decoded again, or gone from
        # the package), and rows whose audio has disappeared.
        stale = sorted(t for t, r in rows.items() if (r["package"] in built_here and t not in kept)
                       or not (audio_dir / f"{t}.flac").is_file())
        for track_id in stale:
            (audio_dir / f"{track_id}.flac").unlink(missing_ok=True)
            del rows[track_id]
        write_manifest(out / "manifest.csv", rows)
        results = _decode_all(jobs, rows, out, sample_rate, min_duration, n_jobs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_corpus_files(out, rows)
    removed = [t for t in stale if t not in rows]
    return _summary(rows, kept, results, licence_skipped, refused, removed)
