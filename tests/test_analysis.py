import numpy as np
import pytest
import torch

from attnpod.analysis import FieldAnalysis, analyse_fields, mode_lag_profiles, scale_selective_pod
from attnpod.fields import collect_fields
from attnpod.lag import from_lag, to_lag
from attnpod.models import GPT, GPTConfig
from attnpod.pod import effective_rank, pod, spectral_concentration
from attnpod.wavelet import dominant_scales, morlet_cwt, scalogram


def random_causal_fields(N=14, T=16, seed=0):
    rng = np.random.default_rng(seed)
    A = np.tril(rng.random((N, T, T)) ** 3)
    return A / A.sum(-1, keepdims=True)


def explicit_windowed(A, a, orientation):
    T = A.shape[-1]
    i, j = np.indices((T, T))
    if orientation == "causal":
        return A * np.exp(-(i - j) ** 2 / (2 * a * a))
    return A * np.exp(-(j - i) ** 2 / (2 * a * a)) * (j >= i)


@pytest.mark.parametrize("orientation", ["causal", "published"])
def test_scale_selective_pod_equals_explicit_construction(orientation):
    A = random_causal_fields() + (0 if orientation == "causal" else np.random.default_rng(9).random((14, 16, 16)))
    if orientation == "causal":
        A = np.tril(A)
    scales = [2.0, 4.5, 13.0]
    result = scale_selective_pod(A, scales, n_modes=3, orientation=orientation)
    for s, a in enumerate(scales):
        reference = pod(explicit_windowed(A, a, orientation).reshape(len(A), -1))
        np.testing.assert_allclose(result.eigenvalues[s], reference.eigenvalues, rtol=1e-5, atol=1e-7 * reference.eigenvalues[0])
        if orientation == "causal":
            ours = from_lag(result.modes[s]).reshape(3, -1)
            np.testing.assert_allclose(np.abs(np.sum(ours * reference.modes[:3], axis=1)), 1.0, atol=1e-5)


def test_published_orientation_is_degenerate_on_causal_fields():
    A = random_causal_fields()
    result = scale_selective_pod(A, [2.0, 8.0, 32.0], orientation="published")
    np.testing.assert_allclose(result.eigenvalues[0], result.eigenvalues[1], rtol=1e-6)
    np.testing.assert_allclose(result.eigenvalues[0], result.eigenvalues[2], rtol=1e-6)
    ours = scale_selective_pod(A, [2.0, 8.0, 32.0])
    assert not np.allclose(ours.eigenvalues[0], ours.eigenvalues[2], rtol=1e-3)


def test_mode_lag_profiles_average_valid_rows():
    modes = np.zeros((1, 4, 4))
    modes[0, 1:, 1] = [3.0, 3.0, 3.0]
    modes[0, 3, 3] = 2.0
    np.testing.assert_allclose(mode_lag_profiles(modes)[0], [0.0, 3.0, 0.0, 2.0])


def test_analyse_fields_agrees_with_its_parts(tmp_path):
    A = np.stack([random_causal_fields(seed=1), random_causal_fields(seed=2)], axis=1)  # (N, L=2, T, T)
    scales = np.array([2.0, 3.0, 5.0, 8.0, 12.0])
    result = analyse_fields(A, scales, n_dominant=2, n_modes=2, progress=False)
    for l in range(2):
        np.testing.assert_allclose(result.scalogram[l], scalogram(A[:, l], scales))
        np.testing.assert_allclose(result.dominant_scales[l], dominant_scales(result.scalogram[l], scales, k=2))
        L = to_lag(A[:, l])
        direct = (np.abs(morlet_cwt(L - L.mean(axis=0), scales)) ** 2).mean(axis=(0, 1))
        np.testing.assert_allclose(result.fluctuation_scalogram[l], direct, rtol=1e-5, atol=1e-12)
        ssp = scale_selective_pod(A[:, l], scales)
        np.testing.assert_allclose(result.eigenvalues[l], ssp.eigenvalues, rtol=1e-6, atol=1e-12)
        top = ssp.eigenvalues[result.dominant_index[l, 0]]
        assert result.spectral_concentration[l] == pytest.approx(spectral_concentration(top), rel=1e-5)
        assert result.effective_rank[l].tolist() == [effective_rank(top, e) for e in result.epsilons]
    result.save(tmp_path / "a.npz")
    loaded = FieldAnalysis.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(loaded.eigenvalues, result.eigenvalues)
    assert loaded.orientation == "causal"


@pytest.mark.parametrize("variant", ["base", "ega1", "conv_l4"])
def test_collect_fields_rows_causal_and_batch_independent(variant, tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(variant=variant, block_size=20, n_layer=2, n_head=4, n_embd=16))
    windows = torch.randint(65, (7, 20))
    fields = collect_fields(model, windows, batch_size=3, progress=False)
    assert fields.shape == (7, 2, 20, 20) and fields.dtype == np.float32
    np.testing.assert_allclose(fields.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(fields, 1) == 0)
    np.testing.assert_allclose(collect_fields(model, windows, batch_size=7, progress=False), fields, atol=1e-6)
    per_head = collect_fields(model, windows, heads="all", batch_size=2, out=tmp_path / "f.npy", progress=False)
    assert per_head.shape == (7, 2, 4, 20, 20) and isinstance(per_head, np.memmap)
    np.testing.assert_allclose(per_head.mean(axis=2), fields, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs on the device machine)")
def test_analysis_on_the_gpu_matches_the_cpu():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 2, 24, 24)) * 2
    logits[..., np.triu(np.ones((24, 24), dtype=bool), 1)] = -np.inf
    A = np.exp(logits - logits.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    scales = np.array([1.5, 3.0, 6.0, 12.0])
    cpu = analyse_fields(A, scales, n_boot=8, progress=False)
    gpu = analyse_fields(A, scales, n_boot=8, progress=False, device="cuda")
    np.testing.assert_array_equal(gpu.dominant_index, cpu.dominant_index)
    for name in ("eigenvalues", "scalogram", "snapshot_energy", "boot_total_variance", "half_eigenvalues",
                 "boot_fluctuation_energy"):
        a, b = getattr(gpu, name), getattr(cpu, name)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max(), err_msg=name)
