// ops_index.cpp: index_select, gather, scatter_add, embedding, cat/stack/split/chunk and matmul.
//
// The backward of a gather-like op is a scatter_add of the gradient (deterministic: each line
// along the indexed dim adds in order), and the backward of cat is narrow.
#include "vt/backend.h"
#include "vt/ops.h"

namespace vt {

static void check_index(const Tensor& index, const char* op) {
  VT_CHECK(index.dtype() == DType::I64 || index.dtype() == DType::I32, op, ": index must be int64 or int32, got ",
           dtype_name(index.dtype()));
}

Tensor index_select(const Tensor& x, int64_t dim_, const Tensor& index) {
  check_index(index, "index_select");
  VT_CHECK(index.dim() <= 1, "index_select: index must be 0-d or 1-d, got shape ", index.shape().str());
  int d = wrap_dim(dim_, x.dim(), "index_select");
  Tensor xv = x.dim() ? x : x.view({1});
  Shape s = xv.shape();
  s[d] = index.numel();
  Tensor out = empty(s, {x.dtype(), x.device()});
  kernels::backend(x.device()).index_select(xv, d, index.reshape({-1}), out);
  if (x.dim() == 0) out = out.view({});
  Shape xs = x.shape();
  autograd::record("index_select", out, {x}, [xs, d, index](const Tensor& g) {
    // index_add: scatter each selected slice back; index expanded to g's shape along the other dims
    Tensor gv = g.dim() ? g : g.view({1});
    Shape view;
    for (int i = 0; i < gv.dim(); ++i) view.push_back(i == d ? index.numel() : 1);
    Tensor idx = index.reshape(view).expand(gv.shape());
    Tensor z = zeros(xs.size() ? xs : Shape{1}, {g.dtype(), g.device()});
    return grads{scatter_add(z, d, idx, gv).reshape(xs)};
  });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim_, const Tensor& index) {
  check_index(index, "gather");
  int d = wrap_dim(dim_, x.dim(), "gather");
  VT_CHECK(index.dim() == x.dim(), "gather: index has ", index.dim(), " dims, input has ", x.dim());
  for (int i = 0; i < x.dim(); ++i)
    VT_CHECK(i == d || index.shape()[i] <= x.shape()[i], "gather: index size ", index.shape()[i], " at dim ", i,
             " exceeds input size ", x.shape()[i], " (index ", index.shape().str(), ", input ", x.shape().str(), ")");
  Tensor out = empty(index.shape(), {x.dtype(), x.device()});
  kernels::backend(x.device()).gather(x, d, index, out);
  Shape xs = x.shape();
  autograd::record("gather", out, {x}, [xs, d, index](const Tensor& g) {
    return grads{scatter_add(zeros(xs, {g.dtype(), g.device()}), d, index, g)};
  });
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim_, const Tensor& index, const Tensor& src) {
  check_index(index, "scatter_add");
  int d = wrap_dim(dim_, x.dim(), "scatter_add");
  VT_CHECK(index.dim() == x.dim() && src.dim() == x.dim(), "scatter_add: input, index and src must have the same "
           "number of dims (", x.dim(), ", ", index.dim(), ", ", src.dim(), ")");
  for (int i = 0; i < x.dim(); ++i) {
    VT_CHECK(index.shape()[i] <= src.shape()[i], "scatter_add: index ", index.shape().str(), " larger than src ",
             src.shape().str(), " at dim ", i);
    VT_CHECK(i == d || index.shape()[i] <= x.shape()[i], "scatter_add: index ", index.shape().str(),
             " larger than input ", x.shape().str(), " at dim ", i);
  }
  VT_CHECK(src.dtype() == x.dtype(), "scatter_add: src dtype ", dtype_name(src.dtype()), " differs from input ",
           dtype_name(x.dtype()));
  Tensor out = x.detach().clone();
  kernels::backend(x.device()).scatter_add(out, d, index, src);
  autograd::record("scatter_add", out, {x, src}, [d, index](const Tensor& g) {
    return grads{g, gather(g, d, index)};
  });
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  VT_CHECK(weight.dim() == 2, "embedding: weight must be (V, D), got ", weight.shape().str());
  Shape s = ids.shape();
  s.push_back(weight.shape()[1]);
  return index_select(weight, 0, ids.reshape({-1})).view(s);
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim_) {
  VT_CHECK(!xs.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& ref = xs[0];
  int d = wrap_dim(dim_, ref.dim(), "cat");
  VT_CHECK(ref.dim() > 0, "cat: zero-dimensional tensor cannot be concatenated");
  Shape s = ref.shape();
  DType t = ref.dtype();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    VT_CHECK(x.dim() == ref.dim(), "cat: tensor ", i, " has ", x.dim(), " dims, tensor 0 has ", ref.dim());
    VT_CHECK(x.device() == ref.device(), "cat: tensor ", i, " is on ", x.device().str());
    for (int k = 0; k < ref.dim(); ++k)
      VT_CHECK(k == d || x.shape()[k] == s[k], "cat: tensor ", i, " has shape ", x.shape().str(),
               ", expected ", s.str(), " except at dim ", d);
    total += x.shape()[d];
    t = result_type(xs[0], x) == t ? t : result_type(empty({1}, t), x);
  }
  s[d] = total;
  Tensor out = empty(s, {t, ref.device()});
  std::vector<int64_t> sizes;
  int64_t at = 0;
  for (const Tensor& x : xs) {
    Tensor part = make_tensor(out.storage(), out.narrow(d, at, x.shape()[d]).layout(), t);
    kernels::backend(out.device()).copy(x, part);
    sizes.push_back(x.shape()[d]);
    at += x.shape()[d];
  }
  if (grad_enabled()) {
    bool any = false;
    for (const Tensor& x : xs) any |= x.requires_grad();
    if (any) {
      // record() takes an initializer list, so chain one node per input via a concatenated proxy
      auto node_inputs = xs;
      auto backward = [sizes, d](const Tensor& g) {
        grads out;
        int64_t off = 0;
        for (int64_t n : sizes) out.push_back(g.narrow(d, off, n)), off += n;
        return out;
      };
      autograd::record("cat", out, node_inputs, backward);
    }
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim_) {
  VT_CHECK(!xs.empty(), "stack: expected a non-empty list of tensors");
  int d = wrap_dim(dim_, xs[0].dim() + 1, "stack");
  std::vector<Tensor> u;
  for (size_t i = 0; i < xs.size(); ++i) {
    VT_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor ", i, " has shape ", xs[i].shape().str(),
             ", tensor 0 has ", xs[0].shape().str());
    u.push_back(xs[i].unsqueeze(d));
  }
  return cat(u, d);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim_) {
  int d = wrap_dim(dim_, x.dim(), "split");
  int64_t total = 0;
  for (int64_t n : sizes) {
    VT_CHECK(n >= 0, "split: negative size ", n);
    total += n;
  }
  VT_CHECK(total == x.shape()[d], "split: sizes sum to ", total, " but dim ", d, " has size ", x.shape()[d]);
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t n : sizes) out.push_back(x.narrow(d, at, n)), at += n;
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim_) {
  int d = wrap_dim(dim_, x.dim(), "split");
  VT_CHECK(split_size > 0 || x.shape()[d] == 0, "split: split_size must be positive, got ", split_size);
  std::vector<int64_t> sizes;
  for (int64_t at = 0; at < x.shape()[d]; at += split_size) sizes.push_back(std::min(split_size, x.shape()[d] - at));
  return split(x, sizes, d);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim_) {
  VT_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  int d = wrap_dim(dim_, x.dim(), "chunk");
  int64_t n = x.shape()[d];
  return split(x, std::max<int64_t>((n + chunks - 1) / chunks, 1), d);
}

// ---- matmul ------------------------------------------------------------------------------------
// Broadcast batch dims, then run (B, M, K) @ (B, K, N) through the backend's bmm with whatever
// strides the (possibly transposed, possibly expanded) operands have: no copies.
Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  VT_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: both operands need at least 1 dim, got ",
           a_in.shape().str(), " and ", b_in.shape().str());
  VT_CHECK(a_in.device() == b_in.device(), "matmul: operands on ", a_in.device().str(), " and ", b_in.device().str());
  DType t = result_type(a_in, b_in);
  VT_CHECK(is_floating(t), "matmul: needs floating-point operands, got ", dtype_name(a_in.dtype()), " and ",
           dtype_name(b_in.dtype()));
  // (..., M, K) @ (K, N): fold the batch into M for one large GEMM, as PyTorch does.
  if (b_in.dim() == 2 && a_in.dim() > 2) {
    Shape s = a_in.shape();
    s[s.size() - 1] = b_in.size(1);
    return matmul(a_in.reshape({-1, a_in.size(-1)}), b_in).view(s);
  }
  Tensor a = a_in.dim() == 1 ? a_in.unsqueeze(0) : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.unsqueeze(1) : b_in;
  a = cast(a, t);
  b = cast(b, t);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  VT_CHECK(b.size(-2) == K, "matmul: shapes ", a_in.shape().str(), " and ", b_in.shape().str(),
           " cannot be multiplied (", K, " vs ", b.size(-2), ")");
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape sa = batch, sb = batch, so = batch;
  sa.push_back(M), sa.push_back(K);
  sb.push_back(K), sb.push_back(N);
  so.push_back(M), so.push_back(N);
  int64_t B = batch.numel();
  Tensor out = empty(so, {t, a.device()});
  {
    NoGradGuard ng;
    // Flatten batch dims to one: a view when the expanded batch dims are collapsible, else a copy.
    auto as3 = [&](const Tensor& x, const Shape& full, int64_t r, int64_t c) {
      Tensor e = x.expand(full);
      if (batch.size() == 0) return e.unsqueeze(0);
      Tensor flat = e.flatten(0, batch.size() - 1);  // may copy when batch strides do not merge
      return flat.view({B, r, c});
    };
    Tensor a3 = as3(a, sa, M, K), b3 = as3(b, sb, K, N);
    kernels::backend(a.device()).bmm(a3, b3, out.view({B, M, N}));
  }
  if (autograd::needs_grad(a, b)) {
    Shape sa0 = a.shape(), sb0 = b.shape();
    autograd::record("matmul", out, {a, b}, [a, b, sa0, sb0](const Tensor& g) {
      Tensor ga, gb;
      if (a.requires_grad()) ga = sum_to(matmul(g, b.transpose(-1, -2)), sa0);
      if (b.requires_grad()) gb = sum_to(matmul(a.transpose(-1, -2), g), sb0);
      return grads{ga, gb};
    });
  }
  if (a_in.dim() == 1) out = out.squeeze(-2);
  if (b_in.dim() == 1) out = out.squeeze(-1);
  return out;
}

}  // namespace vt
