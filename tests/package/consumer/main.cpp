// vt_consumer: a small real computation through an installed vt, checked against values worked
// out by hand. Exit 0 when every check holds; each failed check is printed.
#include <cstdio>
#include <vector>

#include "infinity/scale_schedule.h"  // from vt::models
#include "vt/ops.h"
#include "vt/tensor.h"

static int failures = 0;
static void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "vt_consumer: FAILED: %s\n", what);
    ++failures;
  }
}

int main() {
  // y = sum(a @ b): a @ b = [[19, 22], [43, 50]], and dy/da[i][k] = sum_j b[k][j] = [[11, 15], [11, 15]].
  vt::Tensor a = vt::from_vector<float>({1, 2, 3, 4}, {2, 2});
  vt::Tensor b = vt::from_vector<float>({5, 6, 7, 8}, {2, 2});
  a.requires_grad_();
  vt::Tensor c = vt::matmul(a, b);
  expect(c.tolist<float>() == std::vector<float>{19, 22, 43, 50}, "matmul [[1,2],[3,4]] @ [[5,6],[7,8]]");
  vt::sum(c).backward();
  expect(a.grad().defined() && a.grad().tolist<float>() == std::vector<float>{11, 15, 11, 15},
         "gradient of sum(a @ b) with respect to a");

  // The models library: Infinity's 512 x 512 schedule ends on a 32 x 32 latent grid (stride 16).
  vt::infinity::ScaleSchedule s = vt::infinity::schedule_for_image(512, 512);
  expect(s.scales.back().h == 32 && s.scales.back().w == 32 && s.image_h() == 512, "Infinity schedule for 512x512");
  expect(vt::infinity::num_scales_for_pn("0.25M") == 10, "Infinity scale count of 0.25M");

  if (failures == 0) std::printf("vt_consumer: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
