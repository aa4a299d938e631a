// optim/schedule.h: learning-rate schedules as multipliers of each group's base lr, with the
// semantics of torch's LambdaLR and Hugging Face's transformers.optimization (spec training.md §6).
//
// A schedule maps the 0-based index s of an optimizer update to a multiplier; update s runs with
// lr = initial_lr * multiplier(s). Like LambdaLR, the Scheduler applies multiplier(0) when it is
// built and multiplier(s+1) on its s-th step(), which the training loop calls after optimizer.step().
// So with warmup W > 0 the first update uses lr 0: the parameters do not move, but m, v and t do.
//
//   constant                  1
//   constant_with_warmup      s < W: s / max(1, W)        else 1
//   linear_with_warmup        s < W: s / max(1, W)        else max(0, (S - s) / max(1, S - W))
//   cosine_with_warmup        s < W: s / max(1, W)        else max(0, 0.5 (1 + cos(pi * 2 * cycles * p))),
//                             p = (s - W) / max(1, S - W), cycles = 0.5 by default (half a cosine)
// with W warmup updates and S total updates. Warmup by ratio: W = ceil(S * ratio) computed in double,
// as transformers' TrainingArguments.get_warmup_steps does (so ratio 0.07 of 100 gives 8, not 7).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace vt::optim {

class AdamW;

using LrMultiplier = std::function<double(int64_t step)>;

LrMultiplier constant_schedule();
LrMultiplier constant_schedule_with_warmup(int64_t num_warmup_steps);
LrMultiplier linear_schedule_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps);
LrMultiplier cosine_schedule_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps,
                                         double num_cycles = 0.5);

// W = ceil(num_training_steps * warmup_ratio), as transformers computes it for warmup_ratio.
int64_t warmup_steps_from_ratio(double warmup_ratio, int64_t num_training_steps);

// LambdaLR: sets every group's lr to initial_lr * multiplier(last_step) (one multiplier per group, or
// one for all). Holds a reference to the optimizer, which must outlive it and stay where it is.
class Scheduler {
 public:
  Scheduler(AdamW& optimizer, LrMultiplier multiplier);
  Scheduler(AdamW& optimizer, std::vector<LrMultiplier> per_group);

  void step();                                   // after optimizer.step()
  int64_t last_step() const { return last_step_; }  // index of the update the current lr is for
  // Resuming: jump to `step` (the value last_step() had when the state was saved) and set the lrs.
  void set_last_step(int64_t step);
  double multiplier(size_t group) const;         // at last_step()
  std::vector<double> last_lr() const;           // current lr of every group

 private:
  void apply();
  AdamW& opt_;
  std::vector<LrMultiplier> fns_;
  int64_t last_step_ = 0;
};

}  // namespace vt::optim
