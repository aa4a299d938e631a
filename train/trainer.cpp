// trainer.cpp: the training loop; see trainer.h.
#include "trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sys/resource.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dpo.h"
#include "samples.h"
#include "vae_stage.h"
#include "infinity/self_correction.h"
#include "vt/autograd.h"
#include "vt/ops.h"
#include "vt/optim/adamw.h"
#include "vt/optim/clip.h"
#include "vt/optim/schedule.h"
#include "vt/optim/zero.h"

namespace vt::train {

using json = nlohmann::json;

vargpt::TrainingBatch make_training_batch(const vargpt::Vargpt& model, const Batch& batch, const Recipe& recipe,
                                          Generator& gen) {
  vargpt::TrainingBatch tb;
  tb.input_ids = batch.input_ids;
  tb.attention_mask = batch.attention_mask;
  tb.labels = batch.labels;
  tb.pixel_values = batch.pixel_values;
  tb.image_grid_thw = batch.image_grid_thw;
  tb.schedule = model.config().schedule_for(recipe.gen_size, recipe.gen_size);
  if (!batch.gen_images.defined() || batch.gen_images.size(0) == 0) return tb;
  const int64_t G = batch.gen_images.size(0);
  VT_CHECK(batch.gen_images.dim() == 4 && batch.gen_images.size(2) == recipe.gen_size &&
               batch.gen_images.size(3) == recipe.gen_size,
           "training: generation targets are ", batch.gen_images.shape().str(), ", the recipe's gen_size is ",
           recipe.gen_size);
  NoGradGuard no_grad;
  // The labels come from the continuous latent of the frozen f32 VAE (vargpt.md §10 steps 2-3).
  const Tensor f = model.vae_local->encode_latent(batch.gen_images.to(model.device()).to(DType::F32));
  infinity::SelfCorrectionConfig bsc;
  bsc.noise_apply_layers = recipe.bsc_layers;
  bsc.noise_apply_strength = recipe.bsc_strength;
  const infinity::TeacherBatch t = infinity::bitwise_self_correction(f, tb.schedule, bsc, &gen);
  tb.gen_inputs = t.inputs;
  tb.gen_labels = t.labels;
  const std::vector<float> u = rand({G}, DType::F32, &gen).tolist<float>();
  for (int64_t g = 0; g < G; ++g) tb.drop_condition.push_back(u[g] < recipe.cond_drop);
  return tb;
}

namespace {

double peak_rss_mb() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

std::string clock_text(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60),
                (long long)(s % 60));
  return buf;
}

// A progress bar on a terminal; elsewhere a line at every tenth of the run.
void progress(const Recipe& r, int64_t step, int64_t first, double elapsed, const json& log, bool quiet) {
  if (quiet) return;
  const bool tty = ::isatty(2);
  const int64_t done = step - first, left = r.steps - step;
  const double eta = done > 0 ? elapsed / done * left : 0;
  const int width = 24, fill = static_cast<int>(width * step / r.steps);
  if (!tty && step != r.steps && step % std::max<int64_t>(1, r.steps / 10) != 0) return;
  std::fprintf(stderr, "%s%-14s %5lld/%lld [%s%s] loss %.4f lr %.2e %.0f tok/s ETA %s%s", tty ? "\r" : "",
               r.name.c_str(), (long long)step, (long long)r.steps, std::string(fill, '#').c_str(),
               std::string(width - fill, '.').c_str(), log.value("loss", 0.0), log.value("lr", 0.0),
               log.value("tokens_per_s", 0.0), clock_text(eta).c_str(), tty && step != r.steps ? "" : "\n");
  std::fflush(stderr);
}

// The first trainable parameter whose gradient holds a NaN or Inf, for the error message.
std::string first_nonfinite(const vargpt::Vargpt& model) {
  for (const auto& [name, p] : model.named_parameters(/*trainable_only=*/true)) {
    if (!p.grad().defined()) continue;
    const Tensor g = p.grad().to(DType::F64);
    if (!std::isfinite(sum(abs(g)).item())) return name;
  }
  return "(none found)";
}

}  // namespace

std::vector<optim::ZeroBlock> zero3_blocks(const vargpt::Vargpt& model, bool trainable_only) {
  std::vector<optim::ZeroBlock> blocks;
  for (size_t i = 0; i < model.visual->blocks->size(); ++i)
    blocks.push_back(optim::ZeroBlock::of((*model.visual->blocks)[i], trainable_only));
  for (size_t i = 0; i < model.lm->model->layers->size(); ++i)
    blocks.push_back(optim::ZeroBlock::of((*model.lm->model->layers)[i], trainable_only));
  for (const auto& b : model.vargpt_gen->blocks) {
    optim::ZeroBlock zb = optim::ZeroBlock::of(*b, trainable_only);
    std::erase_if(zb.params, [&](const Tensor& p) { return p.is_same(b->ca->mat_kv->weight) || p.is_same(b->ca->v_bias); });
    blocks.push_back(std::move(zb));
  }
  return blocks;
}


TrainResult train(const Recipe& r, BatchSource data, const TrainOptions& o) {
  VT_CHECK(r.kind == "sft" || r.kind == "dpo" || r.kind == "vae", "training: recipe ", r.name, " is of kind '",
           r.kind, "' (sft, dpo or vae)");
  VT_CHECK(r.kind != "dpo" || !o.reference_dir.empty(), "training: dpo recipe ", r.name, " needs a reference model");
  VT_CHECK(!o.out_dir.empty() && !o.init_dir.empty(), "training: an output and an initial model directory are needed");
  namespace fs = std::filesystem;
  fs::create_directories(o.out_dir);
  const int world = o.group ? o.group->size() : 1, rank = o.group ? o.group->rank() : 0;
  const bool lead = rank == 0;  // writes the log, the model and the trainer state

  // ---- the model, its trainable set, the optimizer and the schedule -----------------------------------
  const DType dtype = r.dtype == "bf16" ? DType::BF16 : DType::F32;
  vargpt::VargptOptions mo;
  mo.sos_single_row = r.sos_single_row;  // the table stays whole in the checkpoint either way
  std::shared_ptr<vargpt::Vargpt> model = vargpt::Vargpt::from_pretrained(o.init_dir, dtype, mo);
  // DPO's reference: a frozen copy in eval mode (vargpt.md §13), given the policy's batch, so its
  // self-correction flips and condition dropout are the policy's (the deterministic reference).
  // Under ZeRO-3 on N ranks it is sharded too, forward only: each rank holds 1/N of it, and its
  // forward gathers it block by block (optim/zero_partition.h ShardedInference).
  std::shared_ptr<vargpt::Vargpt> reference;
  std::unique_ptr<optim::ShardedInference> sharded_reference;
  if (r.kind == "dpo") {
    reference = vargpt::Vargpt::from_pretrained(o.reference_dir, dtype);
    reference->freeze("*");
    reference->eval();
    if (world > 1 && r.zero_stage == 3)
      sharded_reference = std::make_unique<optim::ShardedInference>(*reference, zero3_blocks(*reference, false), o.group);
  }
  DpoOptions dpo;
  dpo.beta = r.dpo_beta;
  dpo.label_smoothing = r.dpo_label_smoothing;
  dpo.ftx = r.dpo_ftx;
  if (r.kind == "vae") {
    // The BSQ tokenizer stage trains vae_local alone (reconstruction, commitment, entropy) on the
    // generation targets; the checkpoint is the whole model, so the next stage starts from it.
    model->freeze("*");
    model->unfreeze("vae_local");
  } else {
    vargpt::apply_freeze_preset(*model, vargpt::freeze_preset_stage(r.freeze));
  }
  model->train();
  model->gradient_checkpointing_enable(r.activation_checkpointing);
  optim::ParamGroupSpec group;
  for (const auto& [name, p] : model->named_parameters(/*trainable_only=*/true)) {
    group.params.push_back(p);
    group.names.push_back(name);
  }
  VT_CHECK(!group.params.empty(), "training: the freeze preset ", r.freeze, " leaves nothing to train");
  group.options = {r.lr, r.beta1, r.beta2, r.eps, r.weight_decay};
  group.name = "trainable";
  // One process: AdamW. N ranks: ZeRO at the recipe's stage, which moves the trainable parameters
  // into its flat arena and wraps an AdamW over this rank's shard (the schedule drives that one).
  std::unique_ptr<optim::AdamW> plain;
  std::unique_ptr<optim::ZeroOptimizer> zero;
  if (world == 1) {
    plain = std::make_unique<optim::AdamW>(std::vector<optim::ParamGroupSpec>{group});
  } else {
    optim::ZeroOptions zo;
    zo.stage = static_cast<int>(r.zero_stage);
    if (zo.stage == 3) zo.blocks = zero3_blocks(*model);  // per block, with prefetch (optim/zero.h)
    zero = std::make_unique<optim::ZeroOptimizer>(std::vector<optim::ParamGroupSpec>{group}, o.group, zo);
    if (!o.quiet) {
      std::string report = zero->memory_report();  // every rank its bytes, rank 0 the formulas too
      if (!lead) report = report.substr(0, report.find('\n') + 1);
      std::fputs(report.c_str(), stderr);
    }
    // Rank r takes micro-batch r of every N consecutive ones: the global order of a one-process run.
    data.next = [next = data.next, world, rank] {
      Batch mine;
      for (int i = 0; i < world; ++i) {
        Batch b = next();
        if (i == rank) mine = std::move(b);
      }
      return mine;
    };
  }
  optim::AdamW& opt = zero ? zero->inner() : *plain;
  const int64_t warmup = optim::warmup_steps_from_ratio(r.warmup_ratio, r.steps);
  optim::LrMultiplier mult = r.schedule == "cosine"   ? optim::cosine_schedule_with_warmup(warmup, r.steps)
                             : r.schedule == "linear" ? optim::linear_schedule_with_warmup(warmup, r.steps)
                                                      : optim::constant_schedule_with_warmup(warmup);
  optim::Scheduler sched(opt, mult);
  Generator gen(r.seed);
  const std::vector<Tensor> params = group.params;
  // The sample grids (rank 0 draws them): the prompts are rendered before the first step.
  std::unique_ptr<SampleGrid> samples;
  if (r.sample_every > 0 && lead)
    samples = std::make_unique<SampleGrid>(r, *model, tok::Tokenizer::from_file(o.init_dir + "/tokenizer.json"),
                                           o.sample_prompts);

  // ---- resume ---------------------------------------------------------------------------------------------
  int64_t step = 0;
  const std::string log_path = o.out_dir + "/log.jsonl";
  auto remove_sample_grids_after = [&](int64_t last) {  // OUT/samples/step-<k>.png for k > last
    std::vector<fs::path> later;
    if (fs::is_directory(o.out_dir + "/samples"))
      for (const auto& e : fs::directory_iterator(o.out_dir + "/samples")) {
        long long k = -1;
        if (std::sscanf(e.path().filename().c_str(), "step-%lld.png", &k) == 1 && k > last) later.push_back(e.path());
      }
    for (const fs::path& p : later) fs::remove(p);
  };
  if (o.resume) {
    if (const auto ck = latest_checkpoint(o.out_dir)) {
      const TrainerState s = load_trainer_state(*ck);
      // The trainable set decides the optimizer's flat layout; a consolidated ZeRO state checks only sizes.
      const bool ck_single_row = s.recipe.is_object() && s.recipe.value("quirks.sos_single_row", false);
      VT_CHECK(ck_single_row == r.sos_single_row, "training ", r.name, ": ", *ck, " was trained with ",
               "quirks.sos_single_row = ", ck_single_row ? "true" : "false", "; resume it with the same value (its ",
               "optimizer state is laid out for that trainable set) or start a new run from it with --init");
      if (zero) {
        zero->load_shards(*ck);  // the trainable weights come from the fp32 master; frozen ones never moved
      } else {
        model->load(*ck);
        if (fs::exists(checkpoint_paths(*ck).optimizer)) opt.load(checkpoint_paths(*ck).optimizer);
        else opt.load_state_dict(optim::ZeroOptimizer::consolidate_shards(*ck), *ck);  // saved by N ranks
      }
      step = s.step;
      sched.set_last_step(step);
      gen.set_state(s.rng_seed, s.rng_offset);
      if (data.restore) data.restore(s.data_position);
      // The log keeps the lines of the steps the checkpoint holds.
      if (lead) {
        std::ifstream in(log_path);
        std::string kept, line;
        while (std::getline(in, line))
          if (!line.empty() && json::parse(line).value("step", int64_t(0)) <= step) kept += line + "\n";
        write_text_atomic(log_path, kept);
        remove_sample_grids_after(step);  // a later grid shows weights this run does not continue from
      }
      if (!o.quiet && lead) std::fprintf(stderr, "%s: resumed from %s (step %lld)\n", r.name.c_str(), ck->c_str(), (long long)step);
    }
  } else if (lead) {
    write_text_atomic(log_path, "");
    remove_sample_grids_after(0);  // an earlier run's
  }

  vargpt::TrainingOptions topt;
  topt.mask_prompt_loss = r.mask_prompt_loss;
  topt.reweight_by_scale = r.reweight_by_scale;
  topt.mrope_consistent = r.mrope_consistent;
  topt.cfg_drop_ca = r.cfg_drop_ca;
  topt.llm_block_causal = r.llm_block_causal;
  const int64_t accum = r.accumulation(world);
  constexpr uint64_t kRngStride = uint64_t{1} << 32;  // Philox offsets reserved per micro-batch (N ranks)
  TrainResult result;
  auto save = [&] {
    TrainerState s;
    s.step = step;
    s.recipe = r.to_json();
    s.rng_seed = gen.seed();
    s.rng_offset = gen.offset();
    if (data.position) s.data_position = data.position();
    s.extra = result.last_log;
    if (!zero) {
      result.checkpoint = save_checkpoint(o.out_dir, *model, &opt, s, o.init_dir, r.keep_last);
      return;
    }
    // Rank 0 opens checkpoint-<step>.tmp, every rank writes its optimizer shard into it, rank 0 writes
    // the consolidated model (stage 3 gathers it first) and moves the directory into place.
    const std::string dir = o.out_dir + "/checkpoint-" + std::to_string(step);
    if (lead) begin_checkpoint(o.out_dir, step);
    o.group->barrier();
    zero->save_shard(dir + ".tmp");
    zero->gather_parameters();
    o.group->barrier();
    if (lead) finish_checkpoint(o.out_dir, *model, nullptr, s, o.init_dir, r.keep_last);
    zero->release_parameters();
    o.group->barrier();
    result.checkpoint = dir;
  };

  // ---- the loop ----------------------------------------------------------------------------------------------
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step;
  int64_t this_call = 0;
  while (step < r.steps) {
    const auto ts = std::chrono::steady_clock::now();
    double loss = 0, text = 0, image = 0, acc = 0;
    std::map<std::string, double> dpo_sums;  // per-kind metrics (DPO rewards, VAE terms)
    int64_t tokens = 0, gen_micro = 0;
    const uint64_t rng_base = gen.offset();
    if (zero) zero->prepare_forward();  // stage 3: the parameters outside the blocks
    for (int64_t a = 0; a < accum; ++a) {
      // N ranks: global micro-batch a·N + rank draws from its own Philox range.
      if (world > 1) gen.set_state(gen.seed(), rng_base + static_cast<uint64_t>(a * world + rank) * kRngStride);
      const Batch b = data.next();
      // The tokenizer stage reads the images alone: no VAE labels or self-correction to prepare.
      const vargpt::TrainingBatch tb = r.kind == "vae" ? vargpt::TrainingBatch{} : make_training_batch(*model, b, r, gen);
      Tensor step_loss;
      if (r.kind == "vae") {
        VT_CHECK(b.gen_images.defined(), "training ", r.name, ": the vae stage trains on generation targets; batch ",
                 "without images (data kinds generation, editing or preference)");
        VaeLossOptions vo;
        vo.scales = model->config().schedule_for(r.gen_size, r.gen_size).scales;  // the model's own schedule
        vo.l1_weight = r.vae_l1, vo.l2_weight = r.vae_l2, vo.commit_weight = r.vae_commit;
        vo.entropy_weight = r.vae_entropy, vo.inv_temperature = r.vae_inv_temperature;
        vo.gradient_weight = r.vae_gradient, vo.saturation_weight = r.vae_saturation;
        const VaeLossOutput out = vae_training_loss(*model->vae_local, b.gen_images.to(model->device()), vo);
        VT_CHECK(std::isfinite(out.loss.item()), "training ", r.name, ": step ", step + 1,
                 " has a non-finite VAE loss; the last good checkpoint is kept");
        dpo_sums["l1"] += out.l1.item() / accum;
        dpo_sums["l2"] += out.l2.item() / accum;
        dpo_sums["commit"] += out.commit.item() / accum;
        dpo_sums["entropy"] += out.entropy.item() / accum;
        dpo_sums["grad"] += out.grad.item() / accum;
        dpo_sums["psnr"] += out.psnr / accum;
        step_loss = out.loss;
      } else if (reference) {
        DpoStepOutput out;
        if (sharded_reference) {  // the same reference log-probs, from the reference gathered block by block
          Tensor ref;
          {
            optim::ShardedInference::Scope gathered(*sharded_reference);
            ref = reference_logps(*reference, tb);
          }
          DpoOptions given = dpo;
          given.precomputed_reference = true;
          out = dpo_forward(*model, nullptr, tb, given, &ref);
        } else {
          out = dpo_forward(*model, reference.get(), tb, dpo);
        }
        for (const auto& [k, v] : dpo_metrics(out)) dpo_sums[k] += v / accum;
        step_loss = out.loss;
        VT_CHECK(std::isfinite(out.loss.item()), "training ", r.name, ": step ", step + 1, " micro-batch ", a,
                 " has a non-finite DPO loss; the last good checkpoint is kept");
      } else {
        const vargpt::TrainingOutput out = vargpt::training_forward(*model, tb, topt);
        const double lt = out.text_loss.item(), li = out.image_loss.defined() ? out.image_loss.item() : 0.0;
        VT_CHECK(std::isfinite(out.loss.item()), "training ", r.name, ": step ", step + 1, " micro-batch ", a,
                 " has a non-finite loss (",
                 std::isfinite(lt) ? "image loss " + std::to_string(li) : "text loss " + std::to_string(lt),
                 "); the last good checkpoint is kept");
        text += lt / accum;
        if (out.image_loss.defined()) image += li, acc += out.bit_accuracy.item(), ++gen_micro;
        step_loss = out.loss;
      }
      loss += step_loss.item() / accum;
      (step_loss * (1.0 / static_cast<double>(accum * world))).backward();
      if (zero) zero->reduce_gradients();
      tokens += r.kind == "vae" ? b.gen_images.numel() / 3 : b.tokens;  // pixels for the tokenizer
    }
    if (world > 1) {
      gen.set_state(gen.seed(), rng_base + static_cast<uint64_t>(accum * world) * kRngStride);
      // The logged metrics over all ranks: means of the per-rank means, sums of the counts.
      std::vector<double> m = {loss, text, image, acc, static_cast<double>(gen_micro), static_cast<double>(tokens)};
      for (const auto& [k, v] : dpo_sums) m.push_back(v);
      Tensor t = from_vector(m);
      o.group->all_reduce(t);
      m = t.tolist<double>();
      loss = m[0] / world, text = m[1] / world, image = m[2], acc = m[3];
      gen_micro = static_cast<int64_t>(m[4]), tokens = static_cast<int64_t>(m[5]);
      size_t i = 6;
      for (auto& [k, v] : dpo_sums) v = m[i++] / world;
    }
    // The tokenizer's encoder and decoder apart (before clipping): whether the bottleneck passes
    // gradient to the encoder at all (not kept under ZeRO, where the gradients are sharded).
    std::optional<double> encoder_norm, decoder_norm;
    if (r.kind == "vae" && !zero) {
      encoder_norm = optim::grad_norm(model->vae_local->encoder->parameters(/*trainable_only=*/true));
      decoder_norm = optim::grad_norm(model->vae_local->decoder->parameters(/*trainable_only=*/true));
    }
    const double grad_norm = zero ? zero->clip_grad_norm(r.max_grad_norm) : optim::clip_grad_norm_(params, r.max_grad_norm);
    VT_CHECK(std::isfinite(grad_norm), "training ", r.name, ": step ", step + 1, " has a non-finite gradient norm; ",
             "first parameter holding it: ", zero ? std::string("(sharded across ranks)") : first_nonfinite(*model),
             "; the last good checkpoint is kept");
    const double lr = sched.last_lr()[0];
    if (zero) zero->step();
    else opt.step();
    sched.step();
    if (zero) zero->zero_grad();
    else opt.zero_grad();
    ++step;
    ++this_call;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    json log = {{"step", step},           {"loss", loss},       {"text_loss", text},
                {"lr", lr},               {"grad_norm", grad_norm}, {"tokens", tokens},
                {"tokens_per_s", tokens / std::max(dt, 1e-9)}, {"step_s", dt},
                {"peak_rss_mb", peak_rss_mb()}, {"elapsed_s", elapsed}};
    if (gen_micro > 0) log["image_loss"] = image * accum / gen_micro, log["bit_accuracy"] = acc / gen_micro;
    if (encoder_norm) log["grad_norm/encoder"] = *encoder_norm, log["grad_norm/decoder"] = *decoder_norm;
    if (reference || r.kind == "vae") {
      log.erase("text_loss");
      for (const auto& [k, v] : dpo_sums) log[k] = v;
    }
    if (sample_due(r, step)) {  // after the update: the grid shows the weights of checkpoint-<step>
      const auto t_sample = std::chrono::steady_clock::now();
      if (zero) zero->gather_parameters();  // stage 3: every rank takes part
      if (samples) {
        const std::string path = samples->write(*model, step, o.out_dir);
        log["samples"] = fs::relative(path, o.out_dir).string();
        log["sample_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_sample).count();
        if (!o.quiet)  // on a terminal, below the progress bar's line
          std::fprintf(stderr, "%s%s: step %lld samples: %s (%.1f s)\n", ::isatty(2) ? "\n" : "", r.name.c_str(),
                       (long long)step, path.c_str(), log["sample_s"].get<double>());
      }
      if (zero) {
        o.group->barrier();
        zero->release_parameters();
      }
    }
    result.last_log = log;
    if (lead && r.log_every > 0 && (step % r.log_every == 0 || step == r.steps)) {
      std::ofstream out(log_path, std::ios::app);
      out << log.dump() << "\n";
    }
    progress(r, step, first, elapsed, log, o.quiet || !lead);
    if (o.on_step) o.on_step(step, log);
    const bool stop_now = o.stop_after >= 0 && this_call >= o.stop_after;
    if ((r.save_every > 0 && step % r.save_every == 0) || step == r.steps || stop_now) save();
    if (stop_now) break;
  }
  if (result.checkpoint.empty()) save();  // resumed at the end already: the checkpoint is current
  result.steps = step;
  return result;
}

}  // namespace vt::train
