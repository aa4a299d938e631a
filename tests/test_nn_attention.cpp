// Attention, KV cache, cosine attention, AdaLN and checkpointing: PyTorch fixtures, the tiled kernel
// against the materialising reference, KV-cache decoding against the full forward, thread-count
// determinism, float64 gradcheck, recomputation giving identical gradients, and bad input.
#include <omp.h>

#include <cmath>
#include <cstring>

#include "op_table_nn_attention.h"
#include "vt/gradcheck.h"
#include "vt/nn/checkpoint.h"
#include "vt/nn/functional.h"
#include "vt/random.h"

using namespace vt;
using nn::AttentionMask;
using V = std::vector<Tensor>;

TEST_CASE("attention and AdaLN match PyTorch on the CPU (forward and backward)") {
  const auto& fx = test::load_fixture("nn_attention");
  REQUIRE(fx.cases.size() >= 26);
  int failed = 0;
  for (auto& c : fx.cases) {
    auto fails = test::run_case(c, fx, Device::cpu(), test::op_table_nn_attention());
    for (auto& f : fails) MESSAGE(f);
    failed += !fails.empty();
  }
  CHECK(failed == 0);
}

TEST_CASE("every op of the attention fixture has an entry in its op table; kernels are registered") {
  const auto& fx = test::load_fixture("nn_attention");
  for (auto& c : fx.cases) CHECK_MESSAGE(test::op_table_nn_attention().count(c["op"]), c["op"]);
  for (const char* k : {"attention_forward", "attention_backward"})
    CHECK_MESSAGE(kernels::supports(k, Device::cpu()), k);
}

static Tensor rnd(const Shape& s, uint64_t seed, DType t = DType::F32, double scale = 1) {
  Generator g(seed);
  return cast(mul(randn(s, DType::F64, &g), scale), t);
}
static Tensor leaf(const Shape& s, uint64_t seed, DType t = DType::F32, double scale = 1) {
  return rnd(s, seed, t, scale).requires_grad_();
}
static std::string diff(const Tensor& a, const Tensor& b, double tol) { return test::compare(a, b, tol, tol); }
static bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.nbytes()) == 0;
}

// Output and (q, k, v) gradients of sum(out * gout).
struct Result {
  Tensor out, dq, dk, dv;
};
using AttnFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;
static Result run(const AttnFn& f, const Shape& qs, const Shape& ks, const Shape& vs, DType t, uint64_t seed) {
  Tensor q = leaf(qs, seed, t), k = leaf(ks, seed + 1, t), v = leaf(vs, seed + 2, t);
  Tensor out = f(q, k, v);
  Tensor gout = rnd(out.shape(), seed + 3, t);
  sum(mul(out, gout)).backward();
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

// ---- the tiled kernel against the reference --------------------------------------------------------
TEST_CASE("tiled attention equals the materialising reference for every mask, GQA ratio and tile edge") {
  Tensor pad = ones({2, 1, 1, 150}, DType::Bool);
  { Tensor p = pad.select(0, 0).narrow(-1, 101, 49); fill_(p, 0); }
  Tensor additive = rnd({150, 150}, 77, DType::F32, 2);
  struct Case {
    const char* name;
    AttentionMask mask;
    int64_t Tq, Tk;
  };
  std::vector<Case> cases = {
      {"none", AttentionMask::none(), 150, 150},
      {"causal", AttentionMask::causal(), 150, 150},
      {"causal top-left Tq < Tk", AttentionMask::causal(), 70, 150},
      {"causal from end Tq < Tk", AttentionMask::causal_from_end(), 70, 150},
      {"causal from end Tq > Tk (empty rows)", AttentionMask::causal_from_end(), 150, 70},
      {"block causal with padding", AttentionMask::block_causal({1, 4, 16, 36, 64}), 150, 150},
      {"block causal, last scales", AttentionMask::block_causal({1, 4, 16, 36, 64}), 100, 150},
      {"varlen", AttentionMask::varlen({0, 13, 77, 140, 150}), 150, 150},
      {"varlen cross", AttentionMask::varlen({0, 40, 90, 150}, {0, 10, 100, 150}), 150, 150},
      {"bool key padding", AttentionMask::from_tensor(pad), 150, 150},
      {"causal + key padding", AttentionMask::causal().with_tensor(pad), 150, 150},
      {"additive", AttentionMask::from_tensor(additive), 150, 150},
  };
  for (auto& c : cases)
    for (auto [Hq, Hkv] : {std::pair<int64_t, int64_t>{2, 2}, {7, 1}}) {
      CAPTURE(c.name);
      CAPTURE(Hq);
      Shape qs{2, Hq, c.Tq, 64}, ks{2, Hkv, c.Tk, 64}, vs{2, Hkv, c.Tk, 48};
      Result a = run([&](auto& q, auto& k, auto& v) { return nn::scaled_dot_product_attention(q, k, v, c.mask); },
                     qs, ks, vs, DType::F32, 10);
      Result b = run([&](auto& q, auto& k, auto& v) {
        return nn::scaled_dot_product_attention_reference(q, k, v, c.mask);
      }, qs, ks, vs, DType::F32, 10);
      CHECK(diff(a.out, b.out, 2e-5) == "");
      CHECK(diff(a.dq, b.dq, 1e-4) == "");
      CHECK(diff(a.dk, b.dk, 1e-4) == "");
      CHECK(diff(a.dv, b.dv, 1e-4) == "");
    }
}

TEST_CASE("tiled attention in bf16 stays within bf16 rounding of the f32 reference") {
  auto f = [](auto& q, auto& k, auto& v) {
    return nn::scaled_dot_product_attention(q, k, v, AttentionMask::causal());
  };
  Result a = run(f, {1, 4, 130, 64}, {1, 2, 130, 64}, {1, 2, 130, 64}, DType::BF16, 20);
  Result b = run(f, {1, 4, 130, 64}, {1, 2, 130, 64}, {1, 2, 130, 64}, DType::F32, 20);
  CHECK(a.out.dtype() == DType::BF16);
  CHECK(diff(a.out.to(DType::F32), b.out, 3e-2) == "");
  CHECK(diff(a.dv.to(DType::F32), b.dv, 6e-2) == "");
  // dq and dk pass through the softmax gradient (P * (dP - rowsum(dO * O))), a difference of
  // nearby values: judged against the largest entry of the reference gradient.
  auto rel_max = [](const Tensor& got, const Tensor& want) {
    const Tensor w = want.to(DType::F64);
    return amax(abs(got.to(DType::F64) - w)).item() / amax(abs(w)).item();
  };
  const double eq = rel_max(a.dq, b.dq), ek = rel_max(a.dk, b.dk);
  MESSAGE("bf16 tiled attention: dq max error ", eq, ", dk ", ek, " of the largest f32 value");
  CHECK(a.dq.dtype() == DType::BF16);
  CHECK(a.dk.dtype() == DType::BF16);
  CHECK(eq < 2e-2);
  CHECK(ek < 2e-2);
}

TEST_CASE("strided q, k, v (a (B, T, H, D) tensor transposed) are read in place") {
  Tensor q = rnd({2, 90, 3, 32}, 1).transpose(1, 2), k = rnd({2, 90, 3, 32}, 2).transpose(1, 2);
  Tensor v = rnd({2, 90, 3, 32}, 3).transpose(1, 2);
  Tensor a = nn::scaled_dot_product_attention(q, k, v, AttentionMask::causal());
  Tensor b = nn::scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), AttentionMask::causal());
  CHECK(bitwise_equal(a, b));
}

TEST_CASE("attention gradients are bitwise identical with 1 and 2 threads (both backward schedules)") {
  const int before = omp_get_max_threads();
  for (int64_t B : {1, 2}) {  // B * Hkv = 1 < 2 threads takes the two-pass schedule; 2 the per-head one
    auto f = [](auto& q, auto& k, auto& v) {
      return nn::scaled_dot_product_attention(q, k, v, AttentionMask::block_causal({1, 4, 16, 64, 100}));
    };
    Shape qs{B, 7, 185, 64}, ks{B, 1, 185, 64};
    omp_set_num_threads(1);
    Result one = run(f, qs, ks, ks, DType::F32, 30);
    omp_set_num_threads(2);
    Result two = run(f, qs, ks, ks, DType::F32, 30);
    CAPTURE(B);
    CHECK(bitwise_equal(one.out, two.out));
    CHECK(bitwise_equal(one.dq, two.dq));
    CHECK(bitwise_equal(one.dk, two.dk));
    CHECK(bitwise_equal(one.dv, two.dv));
  }
  omp_set_num_threads(before);
}

// ---- KV cache ------------------------------------------------------------------------------------------
TEST_CASE("KV cache: token-by-token and chunked causal decoding equal the full forward (batch 2, GQA)") {
  const int64_t B = 2, Hq = 4, Hkv = 2, T = 45, D = 32;
  Tensor q = rnd({B, Hq, T, D}, 40), k = rnd({B, Hkv, T, D}, 41), v = rnd({B, Hkv, T, D}, 42);
  Tensor full = nn::scaled_dot_product_attention(q, k, v, AttentionMask::causal());
  for (int64_t chunk : {1, 7}) {
    nn::KVCache cache;
    std::vector<Tensor> outs;
    for (int64_t t = 0; t < T; t += chunk) {
      int64_t n = std::min(chunk, T - t);
      outs.push_back(nn::attention_with_cache(cache, q.narrow(2, t, n), k.narrow(2, t, n), v.narrow(2, t, n)));
    }
    CAPTURE(chunk);
    CHECK(cache.length == T);
    CHECK(cache.capacity() >= T);
    CHECK(diff(cat(outs, 2), full, 1e-6) == "");
  }
}

TEST_CASE("KV cache: scale-by-scale block-causal decoding equals the full block-causal forward") {
  const std::vector<int64_t> scales = {1, 4, 9, 16, 25};
  const int64_t B = 2, H = 2, T = 55, D = 16;
  Tensor q = rnd({B, H, T, D}, 50), k = rnd({B, H, T, D}, 51), v = rnd({B, H, T, D}, 52);
  Tensor full = nn::scaled_dot_product_attention(q, k, v, AttentionMask::block_causal(scales));
  nn::KVCache plain, masked;
  std::vector<Tensor> a, b;
  std::vector<int64_t> so_far;
  int64_t at = 0;
  for (int64_t n : scales) {
    so_far.push_back(n);
    Tensor qs = q.narrow(2, at, n), ks = k.narrow(2, at, n), vs = v.narrow(2, at, n);
    a.push_back(nn::attention_with_cache(plain, qs, ks, vs, AttentionMask::none()));  // Infinity: no mask
    b.push_back(nn::attention_with_cache(masked, qs, ks, vs, AttentionMask::block_causal(so_far)));
    at += n;
  }
  CHECK(diff(cat(a, 2), full, 1e-6) == "");
  CHECK(diff(cat(b, 2), full, 1e-6) == "");
}

TEST_CASE("KV cache: mixed dtypes, growth keeps earlier views, shape errors") {
  nn::KVCache c;
  c.append(rnd({1, 2, 3, 8}, 1), rnd({1, 2, 3, 8}, 2, DType::BF16));
  Tensor k_before = c.k().clone(), view_before = c.k();
  for (int i = 0; i < 10; ++i) c.append(rnd({1, 2, 3, 8}, 3 + i), rnd({1, 2, 3, 8}, 20 + i, DType::BF16));
  CHECK(c.length == 33);
  CHECK(c.v().dtype() == DType::BF16);
  CHECK(bitwise_equal(view_before, k_before));
  CHECK(bitwise_equal(c.k().narrow(2, 0, 3), k_before));
  CHECK_THROWS_WITH_AS(c.append(rnd({1, 3, 1, 8}, 1), rnd({1, 3, 1, 8}, 1)),
                       doctest::Contains("does not match the cache"), Error);
}

// ---- float64 gradcheck ---------------------------------------------------------------------------------
static void check_grad(const char* what, const std::function<Tensor(const V&)>& f, V inputs) {
  GradcheckResult r = gradcheck(f, std::move(inputs), 1e-6, 1e-6, 1e-4);
  CHECK_MESSAGE(r.ok, what, ": ", r.message);
}

TEST_CASE("gradcheck: attention with every mask kind, GQA, cosine attention, AdaLN") {
  const DType f64 = DType::F64;
  auto sdpa = [](AttentionMask m, std::optional<double> s = std::nullopt) {
    return [m, s](const V& x) { return nn::scaled_dot_product_attention(x[0], x[1], x[2], m, s); };
  };
  check_grad("none", sdpa(AttentionMask::none()), {leaf({1, 2, 5, 4}, 1, f64), leaf({1, 2, 6, 4}, 2, f64),
                                                   leaf({1, 2, 6, 3}, 3, f64)});
  check_grad("causal gqa", sdpa(AttentionMask::causal(), 0.7),
             {leaf({1, 4, 6, 4}, 4, f64), leaf({1, 2, 6, 4}, 5, f64), leaf({1, 2, 6, 4}, 6, f64)});
  check_grad("causal from end, empty rows", sdpa(AttentionMask::causal_from_end()),
             {leaf({1, 1, 5, 3}, 7, f64), leaf({1, 1, 3, 3}, 8, f64), leaf({1, 1, 3, 3}, 9, f64)});
  check_grad("block causal", sdpa(AttentionMask::block_causal({1, 2, 4})),
             {leaf({1, 1, 7, 4}, 10, f64), leaf({1, 1, 7, 4}, 11, f64), leaf({1, 1, 7, 4}, 12, f64)});
  check_grad("varlen", sdpa(AttentionMask::varlen({0, 2, 7})),
             {leaf({2, 1, 7, 3}, 13, f64), leaf({2, 1, 7, 3}, 14, f64), leaf({2, 1, 7, 3}, 15, f64)});
  Tensor additive = rnd({1, 1, 4, 5}, 16, f64);
  check_grad("additive mask", sdpa(AttentionMask::from_tensor(additive)),
             {leaf({1, 2, 4, 3}, 17, f64), leaf({1, 2, 5, 3}, 18, f64), leaf({1, 2, 5, 3}, 19, f64)});
  // Multi-tile: 131 rows and keys cross the 128-wide tiles.
  check_grad("causal, two tiles", sdpa(AttentionMask::causal()),
             {leaf({1, 1, 131, 2}, 20, f64), leaf({1, 1, 131, 2}, 21, f64), leaf({1, 1, 131, 2}, 22, f64)});
  check_grad("cosine attention", [](const V& x) {
    return nn::cosine_attention(x[0], x[1], x[2], x[3], AttentionMask::block_causal({1, 4}));
  }, {leaf({1, 2, 5, 4}, 23, f64), leaf({1, 2, 5, 4}, 24, f64), leaf({1, 2, 5, 4}, 25, f64), leaf({1, 2, 1, 1}, 26, f64)});
  check_grad("modulate", [](const V& x) { return nn::modulate(x[0], x[1], x[2]); },
             {leaf({2, 3, 4}, 27, f64), leaf({2, 4}, 28, f64), leaf({2, 1, 4}, 29, f64)});
  check_grad("gated_residual", [](const V& x) { return nn::gated_residual(x[0], x[1], x[2]); },
             {leaf({2, 3, 4}, 30, f64), leaf({2, 1, 4}, 31, f64), leaf({2, 3, 4}, 32, f64)});
}

TEST_CASE("cosine attention: the per-head scale is clamped at ln 100 (no gradient beyond)") {
  Tensor q = rnd({1, 2, 4, 8}, 1), k = rnd({1, 2, 4, 8}, 2), v = rnd({1, 2, 4, 8}, 3);
  Tensor sm = from_vector<float>({std::log(4.0f), 6.0f}, {1, 2, 1, 1}).requires_grad_();
  auto [qn, kn] = nn::cosine_qk(q, k, sm);
  Tensor norms = sqrt(sum(mul(qn, qn), {-1}));
  CHECK(std::fabs(norms.select(1, 0).select(0, 0).select(0, 0).item() - 4.0) < 1e-5);
  CHECK(std::fabs(norms.select(1, 1).select(0, 0).select(0, 0).item() - 100.0) < 1e-3);
  sum(nn::cosine_attention(q, k, v, sm)).backward();
  CHECK(sm.grad().tolist<float>()[1] == 0.0f);
}

// ---- checkpointing ---------------------------------------------------------------------------------
TEST_CASE("checkpoint: gradients with and without recomputation are bitwise identical (dropout inside)") {
  Tensor w1 = leaf({16, 16}, 60), w2 = leaf({16, 16}, 61), shift = leaf({2, 16}, 62), scale = leaf({2, 16}, 63);
  auto block = [&](const V& in) {
    Tensor h = nn::modulate(in[0], shift, scale);
    Tensor q = nn::linear(h, w1).view({2, 9, 2, 8}).transpose(1, 2);
    Tensor a = nn::scaled_dot_product_attention(q, q, q, AttentionMask::causal()).transpose(1, 2).reshape({2, 9, 16});
    a = nn::dropout(nn::gelu(nn::linear(a, w2)), 0.3);
    return nn::gated_residual(in[0], in[1], a);
  };
  auto step = [&](bool ckpt) {
    manual_seed(1234);
    Tensor x = leaf({2, 9, 16}, 64), gamma = leaf({2, 1, 16}, 65);
    Tensor y = ckpt ? nn::checkpoint(block, {x, gamma}) : block({x, gamma});
    Tensor loss = sum(mul(y, y));
    for (Tensor p : {w1, w2, shift, scale}) p.zero_grad();
    loss.backward();
    return V{loss.detach(), x.grad(), gamma.grad(), w1.grad(), w2.grad(), shift.grad(), scale.grad()};
  };
  V plain = step(false), recomputed = step(true);
  for (size_t i = 0; i < plain.size(); ++i) {
    CAPTURE(i);
    REQUIRE(recomputed[i].defined());
    CHECK(bitwise_equal(plain[i], recomputed[i]));
  }
  // The default generator moves on as without checkpointing (the replay restores it).
  manual_seed(5);
  Tensor x = leaf({2, 9, 16}, 66), gamma = leaf({2, 1, 16}, 67);
  sum(nn::checkpoint(block, {x, gamma})).backward();
  Tensor after_ckpt = rand({4});
  manual_seed(5);
  sum(block({x, gamma})).backward();
  CHECK(bitwise_equal(after_ckpt, rand({4})));
}

TEST_CASE("checkpoint: parameters get gradients when no input requires grad; captured non-leaves are refused") {
  Tensor w = leaf({4, 4}, 70);
  Tensor x = rnd({3, 4}, 71);
  sum(nn::checkpoint([&](const V& in) { return nn::linear(in[0], w); }, {x})).backward();
  REQUIRE(w.grad().defined());
  CHECK(bitwise_equal(w.grad(), sum(x, {0}, false).unsqueeze(0).expand({4, 4}).contiguous()));
  Tensor inner = mul(w, 2.0);  // a non-leaf that requires grad, captured instead of passed
  Tensor y = nn::checkpoint([&](const V& in) { return add(in[0], inner); }, {leaf({4, 4}, 72)});
  Tensor z = add(y, inner);
  sum(mul(inner, inner)).backward(Tensor(), true);  // some earlier backward has visited `inner`
  CHECK_THROWS_WITH_AS(sum(z).backward(), doctest::Contains("pass it through `inputs`"), Error);
}

// ---- bad input --------------------------------------------------------------------------------------
TEST_CASE("attention: bad input raises errors naming the op and the sizes") {
  Tensor q = rnd({1, 6, 5, 8}, 1), k = rnd({1, 4, 7, 8}, 2), v = rnd({1, 4, 7, 8}, 3);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, k, v),
                       doctest::Contains("query heads (6) must be a multiple of KV heads (4)"), Error);
  Tensor k2 = rnd({1, 2, 7, 8}, 2), v2 = rnd({1, 2, 7, 8}, 3);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, k2, v2, AttentionMask::from_tensor(ones({5, 6}, DType::Bool))),
                       doctest::Contains("mask of shape (5, 6) does not broadcast to (B, Hq, Tq, Tk) = (1, 6, 5, 7)"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, rnd({1, 2, 7, 4}, 2), v2),
                       doctest::Contains("q has head dim 8, k has 4"), Error);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, k2, v2, AttentionMask::varlen({0, 3, 4})),
                       doctest::Contains("cu_seqlens (queries) must run from 0 to the sequence length 5"), Error);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, k2, v2, AttentionMask::block_causal({1, 4, 4})),
                       doctest::Contains("scale lengths sum to 9, more than the 7 keys"), Error);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(q, k2, cast(v2, DType::BF16)),
                       doctest::Contains("must share one float dtype"), Error);
  CHECK_THROWS_WITH_AS(nn::modulate(rnd({2, 3, 4}, 1), rnd({5, 4}, 2), rnd({2, 1, 4}, 3)),
                       doctest::Contains("modulate: shift of shape (5, 4) does not broadcast"), Error);
}
