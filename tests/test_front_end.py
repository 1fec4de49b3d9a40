"""The fast front-end equals the reference one: parallel FLAC decoding gives the samples
``soundfile.read`` gives, the float32 blocked STFT gives librosa's log-mel, and the
inference-only conv path gives the training path's output."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from msaf_learned_ssm import audio
from msaf_learned_ssm.audio import load_audio
from msaf_learned_ssm.config import ModelConfig
from msaf_learned_ssm.examples import synthesize_sections
from msaf_learned_ssm.features import compute_patches, log_mel, log_mel_librosa
from msaf_learned_ssm.model import SSMNet, _max_pool_eval

SR = 22050


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """60 s of sections at 22.05 kHz: long enough for the parallel FLAC decoder."""
    return synthesize_sections("ABCA", 15.0)[0]


# ------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n_threads", [2, 3, 4])
def test_parallel_flac_decode_is_bit_identical(tmp_path, music, channels, n_threads):
    assert len(music) >= audio.PARALLEL_MIN_FRAMES  # else the test would not test it
    data = music if channels == 1 else np.stack([music, 0.5 * music[::-1]], axis=1)
    path = tmp_path / "music.flac"
    sf.write(path, data, SR, subtype="PCM_16")
    expected, sr = sf.read(path, dtype="float32", always_2d=True)
    got, got_sr = audio._read_soundfile(path, n_threads)
    assert got_sr == sr and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(load_audio(path, SR, n_threads), load_audio(path, SR, 1))


def test_truncated_long_flac_gives_samples_or_clear_error(tmp_path, music):
    # The header promises more samples than the parallel parts can decode.
    path = tmp_path / "full.flac"
    sf.write(path, music, SR)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    try:
        y = load_audio(cut, SR, n_threads=2)
    except audio.AudioLoadError as exc:
        assert str(cut) in str(exc) and "cannot decode" in str(exc)
    else:
        assert 0 < len(y) <= len(music)
        np.testing.assert_array_equal(y, load_audio(cut, SR, n_threads=1))


# ------------------------------------------------------------------------ features


@pytest.mark.parametrize("n_samples", [1, 100, 1023, 2048, 5000, 66167, 512 * 1100 + 3])
def test_log_mel_equals_librosa(n_samples):
    config = ModelConfig()
    y = (0.1 * np.random.default_rng(n_samples).standard_normal(n_samples)).astype(np.float32)
    with pytest.warns(UserWarning) if n_samples < config.n_fft else nullcontext():
        expected = log_mel_librosa(y, config)  # librosa warns when n_fft > len(y)
    for n_threads in (1, 2):
        got = log_mel(y, config, n_threads)
        assert got.shape == expected.shape == (config.n_mels, 1 + n_samples // config.hop_length)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=5e-6, rtol=0)


def test_log_mel_on_music_and_float64_input(music):
    config = ModelConfig()
    expected = log_mel_librosa(music, config)
    np.testing.assert_allclose(log_mel(music.astype(np.float64), config), expected,
                               atol=5e-6, rtol=0)


def test_patches_do_not_depend_on_thread_count(music):
    config = ModelConfig()
    one, two = compute_patches(music, config, 1), compute_patches(music, config, 2)
    np.testing.assert_array_equal(one.data, two.data)
    np.testing.assert_array_equal(one.times, two.times)


# ------------------------------------------------------------------------ encoder


@pytest.mark.parametrize("shape", [(3, 4, 80, 40), (2, 5, 9, 7), (1, 1, 2, 2)])
def test_max_pool_eval_equals_max_pool(shape):
    x = torch.randn(shape)
    x.view(-1)[::7] = float("nan")  # NaN propagates in both
    pool = torch.nn.MaxPool2d(2)
    for layout in (torch.contiguous_format, torch.channels_last):
        y = x.contiguous(memory_format=layout)
        torch.testing.assert_close(_max_pool_eval(pool, y), F.max_pool2d(y, 2),
                                   rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("slope", [0.25, -0.3])
def test_eval_conv_path_equals_training_path(slope):
    # Pooling before a PReLU is exact only for slopes >= 0; a negative slope keeps the order.
    torch.manual_seed(0)
    model = SSMNet(ModelConfig(attention_layers=0)).eval()
    with torch.no_grad():
        for block in model.encoder.conv:
            block[1].weight.fill_(slope)
    x = torch.randn(20, 80, 40)
    with torch.inference_mode():
        expected = F.normalize(torch.tanh(model.encoder.conv(x[:, None]).flatten(1)), dim=1)
        torch.testing.assert_close(model.encoder(x), expected, atol=1e-6, rtol=1e-6)


def test_mel_filters_and_window_equal_librosa_without_importing_it():
    import librosa

    from msaf_learned_ssm.features import chroma_filterbank, mel_filterbank, periodic_hann

    for sr, n_fft, n_mels, fmax in [(22050, 2048, 80, 8000.0), (16000, 1024, 64, 7000.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)
        chroma = chroma_filterbank(sr, n_fft)
        ref = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0)
        assert chroma.dtype == ref.dtype and chroma.shape == ref.shape
        np.testing.assert_allclose(chroma, ref, rtol=0, atol=1e-7)
    np.testing.assert_allclose(periodic_hann(2048),
                               librosa.filters.get_window("hann", 2048, fftbins=True), atol=1e-7)


def test_resample_equals_librosa_resample():
    import librosa

    from msaf_learned_ssm.audio import resample

    y = np.random.default_rng(0).standard_normal(12345).astype(np.float32)
    for orig, target in [(44100, 22050), (48000, 22050), (16000, 22050)]:
        np.testing.assert_array_equal(resample(y, orig, target),
                                      librosa.resample(y, orig_sr=orig, target_sr=target))


def test_chroma_from_the_log_mel_stft_equals_librosa_below_fmax(music):
    """The chroma shares the log-mel's STFT; librosa's chroma_stft (tuning 0) agrees on a
    signal with no energy above fmax, and the log-mel does not change."""
    import librosa

    from msaf_learned_ssm.features import log_mel_and_chroma

    config = ModelConfig()
    y = librosa.resample(music, orig_sr=SR, target_sr=12000)
    y = librosa.resample(y, orig_sr=12000, target_sr=SR)  # nothing left above 6 kHz
    mel, chroma = log_mel_and_chroma(y, config, 2)
    expected = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=config.n_fft,
                                           hop_length=config.hop_length, tuning=0.0).T
    assert chroma.shape == expected.shape == (mel.shape[1], 12)
    np.testing.assert_allclose(chroma, expected, atol=1e-4)
    np.testing.assert_array_equal(mel, log_mel(y, config, 2))
    patches = compute_patches(y, config, 1, keep_chroma=True)
    np.testing.assert_allclose(patches.chroma, chroma, atol=1e-6)
    assert compute_patches(y, config, 1).chroma is None


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_to_mono_is_the_mean_of_the_channels_bit_for_bit(channels):
    from msaf_learned_ssm.audio import to_mono

    rng = np.random.default_rng(channels)
    interleaved = rng.uniform(-1, 1, (44100, channels)).astype(np.float32)
    data = interleaved.T  # as decoders give it: each channel row strided
    np.testing.assert_array_equal(to_mono(data), data.mean(axis=0))
    assert to_mono(data).dtype == np.float32 and to_mono(data).shape == (44100,)
