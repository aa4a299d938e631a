// Autograd: float64 central-difference gradcheck of every differentiable core op (the cases of
// the op table, with fresh random inputs of the same shapes and views), and the engine's contract:
// accumulation into leaves, retain_graph, no_grad, detach, release of saved tensors.
#include <set>

#include "op_table.h"
#include "vt/gradcheck.h"
#include "vt/random.h"

using namespace vt;

namespace {

// Ops whose inputs must stay in a domain where the function is smooth.
const std::set<std::string> kPositive = {"log", "sqrt", "rsqrt", "reciprocal", "pow", "pow_scalar", "div", "div_scalar"};

bool compare_close(const Tensor& a, const Tensor& b) { return test::compare(a, b, 1e-6, 1e-6).empty(); }

}  // namespace

TEST_CASE("gradcheck: every differentiable core op, float64 central differences") {
  const auto& fx = test::load_fixture("ops_core");
  Generator gen(1234);
  int checked = 0;
  std::set<std::string> ops_checked;
  for (auto& c : fx.cases) {
    if (!c.contains("gout")) continue;
    const std::string op = c["op"];
    if (op == "cast") continue;  // a cast to 16/32 bits quantises: checked below at f32 with a wide eps
    INFO(c["name"].get<std::string>());
    std::vector<Tensor> bases;
    std::vector<bool> is_grad;
    for (auto& in : c["inputs"]) {
      Tensor ref = fx.tensors.at(in["key"]);
      bool g = in["grad"].get<bool>();
      Tensor b = ref;
      if (g) {
        b = randn(ref.shape(), DType::F64, &gen);
        if (kPositive.count(op)) b = add(abs(b), 0.5);
        b.requires_grad_();
      }
      bases.push_back(b);
      is_grad.push_back(g);
    }
    auto views = c["inputs"];
    auto f = [&](const std::vector<Tensor>& xs) {
      std::vector<Tensor> v;
      for (size_t i = 0; i < xs.size(); ++i) v.push_back(test::apply_view(xs[i], views[i]["view"]));
      return test::op_table().at(op)(v, c["args"])[0];
    };
    GradcheckResult r = gradcheck(f, bases, 1e-6, 1e-6, 1e-4);
    CHECK_MESSAGE(r.ok, c["name"].get<std::string>(), ": ", r.message);
    ++checked;
    ops_checked.insert(op);
  }
  MESSAGE("gradcheck ran on ", checked, " cases covering ", ops_checked.size(), " ops");
  CHECK(ops_checked.size() >= 40);
}

TEST_CASE("gradcheck: cast to float32 and back passes the gradient through") {
  auto f = [](const std::vector<Tensor>& xs) { return cast(mul(cast(xs[0], DType::F32), 3.0), DType::F64); };
  GradcheckResult r = gradcheck(f, {randn({6}, DType::F64).requires_grad_()}, 1e-2, 1e-3, 1e-3);
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("gradcheck fails on a wrong derivative") {
  // A deliberately wrong backward (d/dx x^2 reported as x) must be caught.
  auto bad_square = [](const std::vector<Tensor>& xs) {
    Tensor out = mul(xs[0].detach(), xs[0].detach());
    Tensor x = xs[0];
    autograd::record("bad_square", out, {x}, [x](const Tensor& g) { return grads{mul(g, x.detach())}; });
    return out;
  };
  Tensor x = randn({5}, DType::F64).requires_grad_();
  CHECK_FALSE(gradcheck(bad_square, {x}).ok);
}

TEST_CASE("gradients accumulate into leaves across backward calls and paths") {
  Tensor a = from_vector<double>({1, 2, 3}).requires_grad_();
  Tensor y = add(mul(a, a), a);  // two paths to a
  sum(y).backward();
  CHECK(a.grad().tolist<double>() == std::vector<double>{3, 5, 7});
  sum(mul(a, 2.0)).backward();
  CHECK(a.grad().tolist<double>() == std::vector<double>{5, 7, 9});
  a.zero_grad();
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("a shared gradient is copied, not aliased, into two leaves") {
  Tensor a = ones({3}, DType::F32).requires_grad_();
  Tensor b = ones({3}, DType::F32).requires_grad_();
  sum(add(a, b)).backward();
  REQUIRE(a.grad().defined());
  CHECK(a.grad().storage() != b.grad().storage());
}

TEST_CASE("retain_graph allows a second backward; without it the graph is freed") {
  Tensor a = from_vector<float>({1, 2}).requires_grad_();
  Tensor y = sum(mul(exp(a), a));
  y.backward(Tensor(), true);
  Tensor g1 = a.grad().clone();
  y.backward();
  CHECK(compare_close(a.grad(), mul(g1, 2.0)));
  CHECK_THROWS_AS(y.backward(), Error);
}

TEST_CASE("saved tensors are released as soon as backward has used them") {
  Tensor a = randn({1000}).requires_grad_();
  std::weak_ptr<Storage> saved;
  Tensor y;
  {
    Tensor e = exp(a);  // mul's backward saves e
    saved = e.storage();
    y = sum(mul(e, e));
  }
  CHECK_FALSE(saved.expired());
  y.backward();
  CHECK(saved.expired());
}

TEST_CASE("no_grad and detach cut the graph") {
  Tensor a = ones({2}).requires_grad_();
  {
    NoGradGuard ng;
    CHECK_FALSE(mul(a, 2.0).requires_grad());
  }
  CHECK(mul(a, 2.0).requires_grad());
  CHECK_FALSE(a.detach().requires_grad());
  CHECK(a.detach().storage() == a.storage());
  CHECK_THROWS_AS(sum(a.detach()).backward(), Error);
}

TEST_CASE("backward through views reaches the base with the right shape") {
  Tensor a = arange(0, 12, 1, DType::F64).reshape({3, 4}).detach();
  a.requires_grad_();
  Tensor v = a.transpose(0, 1).slice(0, 1, 4, 2).unsqueeze(0).expand({2, 2, 3});
  sum(v).backward();
  std::vector<double> g = a.grad().tolist<double>();
  // columns 1 and 3 are each seen twice (expand), the others never
  CHECK(g == std::vector<double>{0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2});
}

TEST_CASE("integer tensors cannot require grad") {
  Tensor i = arange(3);
  CHECK_THROWS_AS(i.requires_grad_(), Error);
}
