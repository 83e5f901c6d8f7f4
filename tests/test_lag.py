import numpy as np
import pytest
import torch

from attnpod.lag import from_lag, gaussian_lag_window, lag_major, to_lag


def test_definition_elementwise():
    rng = np.random.default_rng(0)
    A = rng.random((3, 7, 7))
    L = to_lag(A)
    for i in range(7):
        for tau in range(7):
            expected = A[:, i, i - tau] if tau <= i else 0.0
            np.testing.assert_array_equal(L[:, i, tau], expected)


def test_round_trip_on_the_causal_part_and_torch_input():
    A = torch.rand(2, 5, 9, 9).tril()
    np.testing.assert_array_equal(from_lag(to_lag(A)), A.numpy())
    L = np.random.default_rng(1).random((4, 9, 9)) * (np.arange(9)[None, :] <= np.arange(9)[:, None])
    np.testing.assert_array_equal(to_lag(from_lag(L)), L)


def test_causality_upper_triangle_is_ignored():
    A = np.random.default_rng(2).random((6, 6))
    np.testing.assert_array_equal(to_lag(A), to_lag(np.tril(A)))
    assert np.all(from_lag(to_lag(A))[np.triu_indices(6, 1)] == 0)


def test_published_orientation_reads_the_upper_triangle():
    A = np.random.default_rng(3).random((6, 6))
    P = to_lag(A, "published")
    assert P[2, 3] == A[2, 5] and P[4, 2] == 0  # 4 + 2 is past the edge
    assert np.all(to_lag(np.tril(A), "published")[:, 1:] == 0)  # a causal field collapses to its diagonal
    C = to_lag(A, "published_clamped")
    assert C[4, 3] == A[4, 5]
    with pytest.raises(ValueError, match="orientation"):
        to_lag(A, "anticausal")


def test_gaussian_window():
    w = gaussian_lag_window(10, 3.0)
    np.testing.assert_allclose(w, np.exp(-np.arange(10) ** 2 / 18.0))
    assert gaussian_lag_window(10, [2.0, 4.0]).shape == (2, 10)


@pytest.mark.parametrize("orientation", ["causal", "published", "published_clamped"])
def test_lag_major_is_the_transposed_lag_field(orientation):
    A = np.random.default_rng(4).random((3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(lag_major(A, orientation), to_lag(A, orientation).transpose(2, 0, 1))


def _row_spans(L, epsilon, nearest=True):
    """An independent, row-by-row computation of the span (nearest keys) or key count (anywhere)."""
    N, T, _ = L.shape
    out = np.zeros(N)
    for n in range(N):
        values = []
        for i in range(1, T):
            row = np.array([L[n, i, tau] for tau in range(i)], dtype=float)  # τ = i is the first token: left out
            if row.sum() <= 1e-6:
                continue
            row = row / row.sum()
            order = row if nearest else np.sort(row)[::-1]
            total, count = 0.0, 0
            while total < 1 - epsilon - 1e-9:
                total += order[count]
                count += 1
            values.append(count)
        out[n] = np.mean(values)
    return out


def test_span_and_keys_equal_a_row_by_row_count():
    from attnpod.lag import attention_keys, attention_span

    rng = np.random.default_rng(0)
    A = np.tril(rng.random((3, 12, 12)) ** 4)
    A /= A.sum(-1, keepdims=True)
    L = to_lag(A)
    np.testing.assert_allclose(attention_span(L, 0.1), _row_spans(L, 0.1))
    np.testing.assert_allclose(attention_keys(L, 0.2), _row_spans(L, 0.2, nearest=False))


def test_a_uniform_window_spans_its_width_and_one_far_key_is_one_key():
    from attnpod.lag import attention_keys, attention_span

    T, W, d = 40, 10, 7
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    window = ((i - j >= 0) & (i - j < W)).astype(float)
    window /= window.sum(-1, keepdims=True)
    rows = np.arange(1, T)
    expected = np.mean([np.ceil(0.9 * min(W, r) - 1e-9) for r in rows])  # row r has min(W, r) keys off token 0
    assert attention_span(to_lag(window[None]))[0] == pytest.approx(expected)
    far = np.where(i - j == np.minimum(d, i), 1.0, 0.0)  # attention d back (or on token 0 when shorter)
    far[:, 0] += 1e-3
    far = np.tril(far) / np.tril(far).sum(-1, keepdims=True)
    L = to_lag(far[None])
    assert attention_keys(L)[0] == pytest.approx(1.0, abs=0.2)
    assert attention_span(L)[0] > d - 1
