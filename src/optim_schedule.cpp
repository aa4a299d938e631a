// optim_schedule.cpp: the learning-rate schedules and the LambdaLR-style Scheduler of
// optim/schedule.h. The formulas are transformers.optimization's, term for term, in double.
#include "vt/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "vt/error.h"
#include "vt/optim/adamw.h"

namespace vt::optim {

static double warmup_fraction(int64_t step, int64_t warmup) {
  return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
}

LrMultiplier constant_schedule() {
  return [](int64_t) { return 1.0; };
}

LrMultiplier constant_schedule_with_warmup(int64_t num_warmup_steps) {
  VT_CHECK(num_warmup_steps >= 0, "constant_schedule_with_warmup: negative warmup ", num_warmup_steps);
  return [=](int64_t s) { return s < num_warmup_steps ? warmup_fraction(s, num_warmup_steps) : 1.0; };
}

LrMultiplier linear_schedule_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps) {
  VT_CHECK(num_warmup_steps >= 0 && num_training_steps >= 0, "linear_schedule_with_warmup: warmup ",
           num_warmup_steps, " and total ", num_training_steps, " must be >= 0");
  return [=](int64_t s) {
    if (s < num_warmup_steps) return warmup_fraction(s, num_warmup_steps);
    return std::max(0.0, static_cast<double>(num_training_steps - s) /
                             static_cast<double>(std::max<int64_t>(1, num_training_steps - num_warmup_steps)));
  };
}

LrMultiplier cosine_schedule_with_warmup(int64_t num_warmup_steps, int64_t num_training_steps, double num_cycles) {
  VT_CHECK(num_warmup_steps >= 0 && num_training_steps >= 0, "cosine_schedule_with_warmup: warmup ",
           num_warmup_steps, " and total ", num_training_steps, " must be >= 0");
  return [=](int64_t s) {
    if (s < num_warmup_steps) return warmup_fraction(s, num_warmup_steps);
    const double progress = static_cast<double>(s - num_warmup_steps) /
                            static_cast<double>(std::max<int64_t>(1, num_training_steps - num_warmup_steps));
    return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress)));
  };
}

int64_t warmup_steps_from_ratio(double warmup_ratio, int64_t num_training_steps) {
  VT_CHECK(warmup_ratio >= 0 && warmup_ratio <= 1, "warmup_steps_from_ratio: ratio ", warmup_ratio,
           " is outside [0, 1]");
  return static_cast<int64_t>(std::ceil(static_cast<double>(num_training_steps) * warmup_ratio));
}

Scheduler::Scheduler(AdamW& optimizer, LrMultiplier multiplier)
    : Scheduler(optimizer, std::vector<LrMultiplier>(optimizer.groups().size(), multiplier)) {}

Scheduler::Scheduler(AdamW& optimizer, std::vector<LrMultiplier> per_group) : opt_(optimizer), fns_(std::move(per_group)) {
  VT_CHECK(fns_.size() == opt_.groups().size(), "Scheduler: ", fns_.size(), " multipliers for ",
           opt_.groups().size(), " parameter groups");
  apply();
}

void Scheduler::apply() {
  for (size_t i = 0; i < fns_.size(); ++i) {
    ParamGroup& g = opt_.groups()[i];
    g.lr = g.initial_lr * fns_[i](last_step_);
  }
}

void Scheduler::step() {
  ++last_step_;
  apply();
}

void Scheduler::set_last_step(int64_t step) {
  VT_CHECK(step >= 0, "Scheduler: negative step ", step);
  last_step_ = step;
  apply();
}

double Scheduler::multiplier(size_t group) const { return fns_.at(group)(last_step_); }

std::vector<double> Scheduler::last_lr() const {
  std::vector<double> out;
  for (const ParamGroup& g : opt_.groups()) out.push_back(g.lr);
  return out;
}

}  // namespace vt::optim
