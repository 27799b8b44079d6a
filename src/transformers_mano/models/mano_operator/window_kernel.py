"""A fused CPU kernel of the operator's overlapping-window attention, compiled on first use.

The attention of `ManoOperatorWindowAttention` gives token x, for every k x k window (stride s) that holds it, a
softmax over that window's keys, and averages those windows' outputs:

    out(x) = sum_n w_n(x) v(x + n),    w_n(x) = 1/|A(x)| sum_{a in A(x)} softmax_{b in W_a(x)}(q(x) . k(x + b - a))[n]

with A(x) the offsets a at which x sits in a window of the (padded) grid, W_a(x) that window's keys on the grid and
n = b - a one of the (2k - 1)^2 neighbour offsets. Per query that is (2k - 1)^2 dot products, k^2 softmaxes of k^2
values and one weighted sum: a few hundred multiply-adds per head, far less than what moving tiles, halos and score
tables through memory costs in tensor operations. So the kernel runs it in one pass over the q/k/v projection as
the linear layer writes it, (B, T, 3, heads, d), and writes (B, T, heads, d) for the output projection:

- forward: per query and head, the neighbour scores, the role softmaxes, the weights w_n and the weighted sum;
- backward, pass 1 (per query): the scores again, dL/dw_n = dout . v(x + n), each role's softmax derivative summed
  into dL/dscore_n, dq = sum_n dL/dscore_n k(x + n); the weights and score gradients kept per query;
- backward, pass 2 (per key y): dk(y) = sum_n dL/dscore_n(y - n) q(y - n) and dv(y) = sum_n w_n(y - n) dout(y - n),
  gathered from the queries that read y, so no two threads write one value.

It is plain C++ with `std::thread`, no torch headers (it builds in about a second with the system's C++ compiler),
loaded with `ctypes`, float32 and float64. Where no compiler is found or the build fails, `kernel_library()` is
None and the attention keeps its tensor path, which stays the reference the tests compare against.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


logger = logging.getLogger(__name__)

_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

struct Geometry {  // the concatenated grids of one call
  int64_t batch, tokens, heads, dim, window, stride, num_grids;
  const int64_t* grids;  // per grid: height, width, padded height, padded width, first token
};

bool has_role(int64_t start, int64_t padded, int64_t window, int64_t stride) {
  return start >= 0 && start <= padded - window && start % stride == 0;
}

// What one token's attention reads, the same for every image and head: its neighbours on the grid (index n into
// the (2k - 1)^2 offsets, and the token distance), and the windows holding it with the neighbours each one sees.
struct Stencil {
  int64_t side, count = 0, roles = 0;
  std::vector<int64_t> index, distance, role_size, role_keys;  // role_keys[r * k^2 + i]: a position in index
  std::vector<int64_t> slot;  // per offset n, its position in index, or -1 off the grid
  explicit Stencil(int64_t k) : side(2 * k - 1), index(side * side), distance(side * side), role_size(k * k),
                                role_keys(k * k * k * k), slot(side * side) {}
  void build(const Geometry& g, int64_t token) {
    const int64_t k = g.window;
    const int64_t* grid = g.grids;
    for (int64_t i = 0; i < g.num_grids; ++i, grid += 5)
      if (token - grid[4] < grid[0] * grid[1]) break;
    const int64_t local = token - grid[4], y = local / grid[1], x = local % grid[1], height = grid[0], width = grid[1];
    std::fill(slot.begin(), slot.end(), -1);
    count = 0;
    for (int64_t oy = -(k - 1); oy < k; ++oy)
      for (int64_t ox = -(k - 1); ox < k; ++ox)
        if (y + oy >= 0 && y + oy < height && x + ox >= 0 && x + ox < width) {
          int64_t n = (oy + k - 1) * side + (ox + k - 1);
          slot[n] = count;
          index[count] = n;
          distance[count++] = oy * width + ox;
        }
    roles = 0;
    for (int64_t ay = 0; ay < k; ++ay)
      for (int64_t ax = 0; ax < k; ++ax) {
        if (!has_role(y - ay, grid[2], k, g.stride) || !has_role(x - ax, grid[3], k, g.stride)) continue;
        int64_t size = 0;
        for (int64_t by = 0; by < k; ++by)
          for (int64_t bx = 0; bx < k; ++bx) {
            int64_t key = slot[(by - ay + k - 1) * side + (bx - ax + k - 1)];
            if (key >= 0) role_keys[roles * k * k + size++] = key;  // keys off the grid are masked
          }
        role_size[roles++] = size;
      }
  }
};

std::vector<Stencil> stencils(const Geometry& g) {  // one per token, shared by the images of the batch
  std::vector<Stencil> all(g.tokens, Stencil(g.window));
  for (int64_t token = 0; token < g.tokens; ++token) all[token].build(g, token);
  return all;
}

template <class F> void parallel(int64_t n, int threads, F body) {
  threads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (threads == 1) { body(0, n); return; }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> failures(threads);  // an exception in a worker is rethrown here, not terminate()
  int64_t chunk = (n + threads - 1) / threads;
  for (int t = 1; t < threads; ++t) {
    int64_t begin = t * chunk, end = std::min(n, begin + chunk);
    if (begin < end) pool.emplace_back([&, t, begin, end] {
      try { body(begin, end); } catch (...) { failures[t] = std::current_exception(); }
    });
  }
  try { body(0, std::min(n, chunk)); } catch (...) { failures[0] = std::current_exception(); }
  for (auto& thread : pool) thread.join();
  for (auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
}

// Products over one head's width: D is that width where the kernel was instantiated for it (0: only known at run
// time), so that the loops unroll and the sums stay in registers.
template <int D, class T> inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)  // vector lanes summed at the end (-fopenmp-simd: no OpenMP runtime)
  for (int64_t i = 0; i < (D ? D : n); ++i) sum += a[i] * b[i];
  return sum;
}

template <class T, int D> struct Sum {  // a vector of one head's width being accumulated
  T local[D > 0 ? D : 1];
  std::vector<T> heap;
  int64_t len;
  explicit Sum(int64_t n) : heap(D > 0 ? 0 : n), len(D ? D : n) {}
  T* data() {
    if constexpr (D > 0) return local; else return heap.data();
  }
  void zero() { T* s = data(); for (int64_t i = 0; i < (D ? D : len); ++i) s[i] = 0; }
  void add(T alpha, const T* __restrict__ x) {
    T* s = data();
#pragma omp simd
    for (int64_t i = 0; i < (D ? D : len); ++i) s[i] += alpha * x[i];
  }
  void store(T* __restrict__ out) { T* s = data(); for (int64_t i = 0; i < (D ? D : len); ++i) out[i] = s[i]; }
};

template <class F> void with_heads(int64_t heads, F body) {  // the common head counts known at compile time
  switch (heads) {
    case 4: return body(std::integral_constant<int, 4>{});
    case 8: return body(std::integral_constant<int, 8>{});
    default: return body(std::integral_constant<int, 0>{});
  }
}

// One query, all heads at once (arrays [stencil position i][head h], H heads): the weight w of each neighbour, the
// windows' softmaxes averaged. The softmaxes share exp(score - the head's max over all neighbours); a window in which
// some head's terms all underflow takes its own max. With probs, each window's probabilities are kept there,
// [window r][its key j][head h], for the backward. scratch: (k^2 + 2) H values.
template <class T, int HEADS>
void window_weights(const Stencil& st, int64_t heads, const T* score, T* exps, T* weight, T* probs, T* scratch,
                    int64_t k2) {
  const int64_t H = HEADS ? HEADS : heads;
  T *prob = scratch, *top = prob + k2 * H, *total = top + H;
  for (int64_t j = 0; j < st.count * H; ++j) weight[j] = 0;
  if (st.roles == 0) return;
  for (int64_t h = 0; h < H; ++h) top[h] = -INFINITY;
  for (int64_t i = 0; i < st.count; ++i)
    for (int64_t h = 0; h < H; ++h) top[h] = std::max(top[h], score[i * H + h]);
  for (int64_t i = 0; i < st.count; ++i)
    for (int64_t h = 0; h < H; ++h) exps[i * H + h] = std::exp(score[i * H + h] - top[h]);
  const T role_weight = (T)(1.0 / (double)st.roles);
  for (int64_t r = 0; r < st.roles; ++r) {
    const int64_t* keys = st.role_keys.data() + r * k2;
    const int64_t size = st.role_size[r];
    if (probs) prob = probs + r * k2 * H;
    for (int64_t h = 0; h < H; ++h) total[h] = 0;
    for (int64_t j = 0; j < size; ++j)
      for (int64_t h = 0; h < H; ++h) total[h] += exps[keys[j] * H + h];
    bool underflow = false;
    // a window far below the query's max (its terms near or under the smallest normal numbers, where precision is
    // lost or flushed to zero) is normalised on its own max instead
    for (int64_t h = 0; h < H; ++h) underflow |= !(total[h] >= std::numeric_limits<T>::epsilon());
    if (!underflow) {
      for (int64_t h = 0; h < H; ++h) total[h] = 1 / total[h];
      for (int64_t j = 0; j < size; ++j)
        for (int64_t h = 0; h < H; ++h) prob[j * H + h] = exps[keys[j] * H + h] * total[h];
    } else {  // rare: every head of this window on its own max
      for (int64_t h = 0; h < H; ++h) {
        T own = -INFINITY, sum = 0;
        for (int64_t j = 0; j < size; ++j) own = std::max(own, score[keys[j] * H + h]);
        for (int64_t j = 0; j < size; ++j) sum += (prob[j * H + h] = std::exp(score[keys[j] * H + h] - own));
        for (int64_t j = 0; j < size; ++j) prob[j * H + h] /= sum;
      }
    }
    for (int64_t j = 0; j < size; ++j)
      for (int64_t h = 0; h < H; ++h) weight[keys[j] * H + h] += prob[j * H + h] * role_weight;
  }
}

// The backward of window_weights for one query, from the probabilities it kept: with grad_weight the loss gradient
// of each neighbour weight, the gradient of each neighbour score, sum over windows of role_weight p_j (dw_j - sum_i
// p_i dw_i). scratch: H values.
template <class T, int HEADS>
void score_gradients(const Stencil& st, int64_t heads, const T* probs, const T* grad_weight, T* grad_score,
                     T* scratch, int64_t k2) {
  const int64_t H = HEADS ? HEADS : heads;
  T* mean = scratch;
  for (int64_t j = 0; j < st.count * H; ++j) grad_score[j] = 0;
  if (st.roles == 0) return;
  const T role_weight = (T)(1.0 / (double)st.roles);
  for (int64_t r = 0; r < st.roles; ++r) {
    const int64_t* keys = st.role_keys.data() + r * k2;
    const T* prob = probs + r * k2 * H;
    for (int64_t h = 0; h < H; ++h) mean[h] = 0;
    for (int64_t j = 0; j < st.role_size[r]; ++j)
      for (int64_t h = 0; h < H; ++h) mean[h] += prob[j * H + h] * grad_weight[keys[j] * H + h];
    for (int64_t j = 0; j < st.role_size[r]; ++j)
      for (int64_t h = 0; h < H; ++h)
        grad_score[keys[j] * H + h] += prob[j * H + h] * role_weight * (grad_weight[keys[j] * H + h] - mean[h]);
  }
}

// probs, weights: nullptr (no backward to come), or where to keep each query's window probabilities,
// (B, T, k^2, k^2, heads), and neighbour weights by offset n, (B, T, (2k - 1)^2, heads).
template <class T, int D> void forward(const Geometry& g, const T* qkv, T* out, T* probs, T* weights, int threads) {
  const int64_t dim = D ? D : g.dim;
  const int64_t k = g.window, k2 = k * k, side = 2 * k - 1, H = g.heads, row = 3 * H * dim, hd = H * dim;
  const std::vector<Stencil> stencil = stencils(g);
  parallel(g.batch * g.tokens, threads, [&](int64_t begin, int64_t end) {
    std::vector<T> score(side * side * H), exps(side * side * H), weight(side * side * H), scratch((k2 + 2) * H);
    Sum<T, D> o(dim);
    for (int64_t item = begin; item < end; ++item) {
      const Stencil& st = stencil[item % g.tokens];
      const T* q = qkv + item * row;
      for (int64_t i = 0; i < st.count; ++i)
        for (int64_t h = 0; h < H; ++h)
          score[i * H + h] = dot<D>(q + h * dim, q + st.distance[i] * row + hd + h * dim, dim);
      T* kept = probs ? probs + item * k2 * k2 * H : nullptr;
      with_heads(H, [&](auto heads) {
        window_weights<T, decltype(heads)::value>(st, H, score.data(), exps.data(), weight.data(), kept,
                                                  scratch.data(), k2);
      });
      for (int64_t h = 0; h < H; ++h) {
        o.zero();
        for (int64_t i = 0; i < st.count; ++i) o.add(weight[i * H + h], q + st.distance[i] * row + 2 * hd + h * dim);
        o.store(out + (item * H + h) * dim);
      }
      if (!weights) continue;
      T* saved = weights + item * side * side * H;
      std::fill(saved, saved + side * side * H, (T)0);
      for (int64_t i = 0; i < st.count; ++i)
        for (int64_t h = 0; h < H; ++h) saved[st.index[i] * H + h] = weight[i * H + h];
    }
  });
}

template <class T, int D>
void backward(const Geometry& g, const T* qkv, const T* probs, const T* weights, const T* grad_out, T* grad_qkv,
              T* grad_scores, int threads) {
  const int64_t dim = D ? D : g.dim;
  const int64_t k = g.window, k2 = k * k, side = 2 * k - 1, H = g.heads, row = 3 * H * dim, hd = H * dim;
  const std::vector<Stencil> stencil = stencils(g);
  parallel(g.batch * g.tokens, threads, [&](int64_t begin, int64_t end) {  // pass 1: per query
    std::vector<T> grad_weight(side * side * H), grad_score(side * side * H), scratch(H);
    Sum<T, D> d_query(dim);
    for (int64_t item = begin; item < end; ++item) {
      const Stencil& st = stencil[item % g.tokens];
      const T* q = qkv + item * row;
      const T* d_out = grad_out + item * hd;
      for (int64_t i = 0; i < st.count; ++i)
        for (int64_t h = 0; h < H; ++h)
          grad_weight[i * H + h] = dot<D>(d_out + h * dim, q + st.distance[i] * row + 2 * hd + h * dim, dim);
      with_heads(H, [&](auto heads) {
        score_gradients<T, decltype(heads)::value>(st, H, probs + item * k2 * k2 * H, grad_weight.data(),
                                                   grad_score.data(), scratch.data(), k2);
      });
      T* saved = grad_scores + item * side * side * H;  // by neighbour offset n and head, for the keys' pass
      std::fill(saved, saved + side * side * H, (T)0);
      for (int64_t i = 0; i < st.count; ++i)
        for (int64_t h = 0; h < H; ++h) saved[st.index[i] * H + h] = grad_score[i * H + h];
      for (int64_t h = 0; h < H; ++h) {
        d_query.zero();
        for (int64_t i = 0; i < st.count; ++i)
          d_query.add(grad_score[i * H + h], q + st.distance[i] * row + hd + h * dim);
        d_query.store(grad_qkv + item * row + h * dim);
      }
    }
  });
  parallel(g.batch * g.tokens, threads, [&](int64_t begin, int64_t end) {  // pass 2: per key, from its readers
    Sum<T, D> d_key(dim), d_value(dim);
    for (int64_t item = begin; item < end; ++item) {
      const Stencil& st = stencil[item % g.tokens];  // symmetric: the neighbours of y are the queries reading y
      for (int64_t h = 0; h < H; ++h) {
        d_key.zero();
        d_value.zero();
        for (int64_t i = 0; i < st.count; ++i) {
          int64_t reader = item + st.distance[i], n = side * side - 1 - st.index[i];  // its offset to y: -n
          int64_t at = (reader * side * side + n) * H + h;
          d_key.add(grad_scores[at], qkv + reader * row + h * dim);
          d_value.add(weights[at], grad_out + (reader * H + h) * dim);
        }
        d_key.store(grad_qkv + item * row + hd + h * dim);
        d_value.store(grad_qkv + item * row + 2 * hd + h * dim);
      }
    }
  });
}

template <class T> void forward_any(const int64_t* shape, const int64_t* grids, const T* qkv, T* out, T* probs,
                                     T* weights, int threads) {
  Geometry g{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], shape[6], grids};
  switch (g.dim) {  // the common head widths unrolled
    case 16: return forward<T, 16>(g, qkv, out, probs, weights, threads);
    case 32: return forward<T, 32>(g, qkv, out, probs, weights, threads);
    case 64: return forward<T, 64>(g, qkv, out, probs, weights, threads);
    default: return forward<T, 0>(g, qkv, out, probs, weights, threads);
  }
}

template <class T> void backward_any(const int64_t* shape, const int64_t* grids, const T* qkv, const T* probs,
                                      const T* weights, const T* grad_out, T* grad_qkv, T* grad_scores, int threads) {
  Geometry g{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], shape[6], grids};
  switch (g.dim) {
    case 16: return backward<T, 16>(g, qkv, probs, weights, grad_out, grad_qkv, grad_scores, threads);
    case 32: return backward<T, 32>(g, qkv, probs, weights, grad_out, grad_qkv, grad_scores, threads);
    case 64: return backward<T, 64>(g, qkv, probs, weights, grad_out, grad_qkv, grad_scores, threads);
    default: return backward<T, 0>(g, qkv, probs, weights, grad_out, grad_qkv, grad_scores, threads);
  }
}

template <class F> int guarded(F body) {  // no C++ exception crosses into Python: a status instead
  try {
    body();
    return 0;
  } catch (...) {
    return 1;
  }
}

}  // namespace

// shape: batch, tokens, heads, head width, window, stride, number of grids; grids: 5 values per grid (above).
extern "C" {
int mano_window_float32_forward(const int64_t* shape, const int64_t* grids, const float* qkv, float* out,
                                 float* probs, float* weights, int threads) {
  return guarded([&] { forward_any<float>(shape, grids, qkv, out, probs, weights, threads); });
}
int mano_window_float64_forward(const int64_t* shape, const int64_t* grids, const double* qkv, double* out,
                                 double* probs, double* weights, int threads) {
  return guarded([&] { forward_any<double>(shape, grids, qkv, out, probs, weights, threads); });
}
int mano_window_float32_backward(const int64_t* shape, const int64_t* grids, const float* qkv, const float* probs,
                                  const float* weights, const float* grad_out, float* grad_qkv, float* grad_scores,
                                  int threads) {
  return guarded([&] {
    backward_any<float>(shape, grids, qkv, probs, weights, grad_out, grad_qkv, grad_scores, threads);
  });
}
int mano_window_float64_backward(const int64_t* shape, const int64_t* grids, const double* qkv, const double* probs,
                                  const double* weights, const double* grad_out, double* grad_qkv,
                                  double* grad_scores, int threads) {
  return guarded([&] {
    backward_any<double>(shape, grids, qkv, probs, weights, grad_out, grad_qkv, grad_scores, threads);
  });
}
}
"""

_FLAGS = (
    "-O3",
    "-fopenmp-simd",
    "-fassociative-math",
    "-fno-signed-zeros",
    "-fno-trapping-math",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-pthread",
)
_NATIVE = ("-march=native",)  # code for this processor's vector units, tried first
_SYMBOLS = {torch.float32: "mano_window_float32", torch.float64: "mano_window_float64"}


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"  # Path.home raises RuntimeError without a home
    return Path(root) / "transformers_mano" / "kernels"


def _processor() -> str:
    """What -march=native compiles for: the CPU's model and feature flags where the system tells them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))


def _built(compiler: list[str], flags: tuple[str, ...]) -> Path:
    """The shared library of `_SOURCE` built with `flags`, from the cache or compiled now (atomically: a build that
    fails or is interrupted leaves nothing behind)."""
    native = _processor() if _NATIVE[0] in flags else ""  # code for this processor is keyed by its features
    key = hashlib.sha256("\0".join((_SOURCE, *compiler, *flags, platform.machine(), native)).encode()).hexdigest()[:16]
    target = _cache_dir() / f"window_attention_{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            source, built = Path(scratch) / "window_attention.cpp", Path(scratch) / target.name
            source.write_text(_SOURCE)
            subprocess.run(
                [*compiler, *flags, str(source), "-o", str(built)],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            os.replace(built, target)
    return target


@functools.cache
def kernel_library() -> ctypes.CDLL | None:
    """The compiled kernel, built once per machine into `~/.cache/transformers_mano/kernels` (for this processor,
    else with portable flags); None where it cannot be built or loaded, with the reason logged once."""
    found = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    compiler = shlex.split(os.environ["CXX"]) if os.environ.get("CXX") else [found] if found else []
    if not compiler or sys.platform == "win32":
        logger.info("No C++ compiler found: MANO's operator attention runs on its tensor path.")
        return None
    errors = []
    for flags in ((*_FLAGS, *_NATIVE), _FLAGS):
        try:
            library = ctypes.CDLL(str(_built(compiler, flags)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            errors.append(str(getattr(error, "stderr", "") or error).strip())
            continue
        for name in _SYMBOLS.values():
            getattr(library, f"{name}_forward").argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int]
            getattr(library, f"{name}_backward").argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int]
            getattr(library, f"{name}_forward").restype = getattr(library, f"{name}_backward").restype = ctypes.c_int
        return library
    logger.warning(
        f"MANO's window-attention kernel could not be built with {' '.join(compiler)} ({errors[-1]}); the "
        "operator runs on its tensor path."
    )
    return None


def _has_storage(tensor: torch.Tensor) -> bool:
    try:
        tensor.data_ptr()
    except RuntimeError:  # the tensors of torch.func's transforms (grad, vmap, jvp) and fake tensors have none
        return False
    return True


def kernel_applies(tensor: torch.Tensor) -> bool:
    """Whether the compiled kernel can run on `tensor`: on the CPU, float32 or float64, with storage of its own (not
    inside `torch.func`'s transforms), not inside `torch.compile` (which cannot trace a foreign call), and built on
    this machine."""
    return (
        tensor.device.type == "cpu"
        and tensor.dtype in _SYMBOLS
        and not torch.compiler.is_compiling()
        and _has_storage(tensor)
        and kernel_library() is not None
    )


def kernel_threads(queries: int) -> int:
    """Threads for a call over `queries` query tokens: one per 65,536 of them, at most torch's count. Below that the
    calling thread alone: on the project's 2-CPU machine two threads made a 16x16 step (5,440 queries a call) slower
    than one (torch's OpenMP workers spin on the second CPU after their own work) and a 64x64 one (21,824) no
    faster."""
    return max(1, min(torch.get_num_threads(), queries // 65536))


def _call(function: str, dtype: torch.dtype, threads: int, *arguments) -> None:
    status = getattr(kernel_library(), f"{_SYMBOLS[dtype]}_{function}")(*arguments, threads)
    if status != 0:
        raise RuntimeError(f"MANO's window-attention kernel failed in its {function} pass (out of memory or threads)")


class _WindowAttention(torch.autograd.Function):
    """The kernel's forward and backward. A backward that must itself be differentiable (`create_graph=True`:
    second derivatives) is taken through `reference`, the same function in tensor operations."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, shape: torch.Tensor, grids: torch.Tensor, reference, keep: bool, threads: int):
        batch_size, num_tokens, heads, head_dim, window_size = (int(v) for v in shape[:5])
        output = qkv.new_empty(batch_size, num_tokens, heads, head_dim)
        probs = weights = None
        if keep:  # what the backward reads: each window's probabilities, each neighbour's weight
            probs = qkv.new_empty(batch_size, num_tokens, window_size**2, window_size**2, heads)
            weights = qkv.new_empty(batch_size, num_tokens, (2 * window_size - 1) ** 2, heads)
        _call(
            "forward",
            qkv.dtype,
            threads,
            shape.data_ptr(),
            grids.data_ptr(),
            qkv.data_ptr(),
            output.data_ptr(),
            None if probs is None else probs.data_ptr(),
            None if weights is None else weights.data_ptr(),
        )
        ctx.save_for_backward(qkv, probs, weights, shape, grids)
        ctx.reference, ctx.threads = reference, threads
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        qkv, probs, weights, shape, grids = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a backward that autograd can differentiate again
            if ctx.reference is None:
                raise RuntimeError("fused_window_attention was called without `reference`: no second derivatives")
            with torch.enable_grad():
                output = ctx.reference(qkv).view(grad_output.shape)
            (grad_qkv,) = torch.autograd.grad(output, qkv, grad_output, create_graph=True)
            return grad_qkv, None, None, None, None, None
        grad_output = grad_output.contiguous()
        grad_qkv = torch.empty_like(qkv)
        grad_scores = torch.empty_like(weights)  # B, T, (2k - 1)^2, heads
        _call(
            "backward",
            qkv.dtype,
            ctx.threads,
            shape.data_ptr(),
            grids.data_ptr(),
            qkv.data_ptr(),
            probs.data_ptr(),
            weights.data_ptr(),
            grad_output.data_ptr(),
            grad_qkv.data_ptr(),
            grad_scores.data_ptr(),
        )
        return grad_qkv, None, None, None, None, None


def fused_window_attention(
    qkv: torch.Tensor,
    grids: list[tuple[int, int, int, int]],
    heads: int,
    head_dim: int,
    window_size: int,
    window_stride: int,
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """Overlapping-window attention of every grid's tokens (see the module docstring), differentiable.

    Args:
        qkv: (B, T, 3 * heads * head_dim), the queries (scale folded in), keys and values of the tokens of every
            grid concatenated row-major, as the QKV projection writes them.
        grids: per grid, (height, width, padded height, padded width): its windows start on the stride inside the
            padded grid, and keys off the grid are masked.
        reference: the same map in tensor operations, (B, T, 3 * inner) -> (B, T, inner), for second derivatives
            (a backward with `create_graph=True`); without it they raise.
        threads: the kernel's threads (None: `kernel_threads`); the result is the same at any count.

    Returns:
        (B, T, heads * head_dim), each token's average over its windows.
    """
    batch_size, num_tokens = qkv.shape[:2]
    if window_size < 1 or not 1 <= window_stride <= window_size:
        raise ValueError(f"window_size ({window_size}) and window_stride ({window_stride}) need 1 <= stride <= size")
    firsts = [sum(h * w for h, w, _, _ in grids[:index]) for index in range(len(grids))]
    if firsts[-1] + grids[-1][0] * grids[-1][1] != num_tokens or qkv.shape[2] != 3 * heads * head_dim:
        raise ValueError(
            f"qkv of shape {tuple(qkv.shape)} does not hold {heads} heads of {head_dim} for grids {grids}"
        )
    shape = torch.tensor([batch_size, num_tokens, heads, head_dim, window_size, window_stride, len(grids)])
    table = torch.tensor([[*grid, first] for grid, first in zip(grids, firsts)]).flatten()
    keep = torch.is_grad_enabled() and qkv.requires_grad  # a backward may follow
    threads = kernel_threads(batch_size * num_tokens) if threads is None else threads
    output = _WindowAttention.apply(qkv.contiguous(), shape, table, reference, keep, threads)
    return output.view(batch_size, num_tokens, heads * head_dim)


__all__ = ["fused_window_attention", "kernel_applies", "kernel_library", "kernel_threads"]
