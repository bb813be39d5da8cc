// xft-tool: the utility verbs.
//   forward --model DIR --tokens 1,2,3 --out FILE   logits [T, vocab] (F32) as safetensors
//   inspect DIR                                     config and tensors with shapes and dtypes
//   upcycle --model DENSE --out MOE --experts 8 --top-k 6 [--routing ...] [--router ...] [--seed S]
//   generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3)... [--max-new-tokens N] [--temperature T]
//            [--top-p P] [--stop S]...                  batched generation with a KV cache
//   eval --model DIR --problems FILE [--dataset humaneval+|mbpp+|humaneval|mbpp] [--samples n --temperature t]
//        [--out results.jsonl [--samples-out samples.jsonl]]
//                                                   generation + scoring (HumanEval+/MBPP+ with the
//                                                   EvalPlus protocol), the paper's prompt
//   score --problems FILE --samples SAMPLES.jsonl [--out results.jsonl]
//                                                   scores EvalPlus-format samples made anywhere
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <chrono>

#include "xft/core/error.h"
#include "xft/eval/code_eval.h"
#include "xft/eval/generation.h"
#include "xft/eval/model_generator.h"
#include "xft/eval/prompt.h"
#include "xft/eval/samples.h"
#include "xft/eval/score.h"
#include "xft/methods/upcycle.h"
#include "xft/model/model_io.h"
#include "xft/pipelines/experiment.h"
#include "xft/train/memory_plan.h"

namespace {

std::vector<int64_t> parse_tokens(const std::string& text) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    XFT_CHECK(used == item.size() && !item.empty() && v >= 0, "--tokens: '", item,
              "' is not a non-negative integer (expected a comma-separated list like 1,2,3)");
    ids.push_back(v);
  }
  XFT_CHECK(!ids.empty(), "--tokens: no token ids given");
  return ids;
}

int cmd_forward(const std::string& model_dir, const std::string& tokens, const std::string& out_path) {
  auto model = xft::load_model(model_dir);
  model->eval();
  auto ids = parse_tokens(tokens);
  const int64_t V = model->config().vocab_size;
  for (auto id : ids) XFT_CHECK(id < V, "--tokens: id ", id, " is outside the vocabulary (size ", V, ")");
  torch::NoGradGuard ng;
  auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto logits = model->forward(input).logits.squeeze(0).to(torch::kFloat32).contiguous();
  xft::save_safetensors(out_path, {{"logits", logits}});
  std::cout << "wrote logits " << logits.sizes() << " to " << out_path << "\n";
  return 0;
}

int cmd_inspect(const std::string& dir) {
  auto config = xft::ModelConfig::load(dir);
  std::cout << config.to_json().dump(2) << "\n";
  auto files = xft::TensorDirectory::open(dir);
  int64_t total = 0;
  for (const auto& name : files.names()) {
    const auto& e = files.entry(name);
    int64_t n = 1;
    for (auto s : e.shape) n *= s;
    total += n;
    std::cout << name << "  " << xft::safetensors_dtype_name(e.dtype) << "  " << c10::IntArrayRef(e.shape) << "\n";
  }
  std::cout << files.names().size() << " tensors, " << total << " parameters\n";
  return 0;
}

int cmd_generate(const std::string& model_dir, const std::vector<std::string>& prompts,
                 const std::vector<std::string>& prompt_ids, xft::GenerationConfig config, const std::string& dtype,
                 bool ignore_eos) {
  XFT_CHECK(prompts.empty() != prompt_ids.empty(), "generate: give --prompt or --prompt-ids (one kind)");
  xft::LoadOptions load;
  load.dtype = dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
  if (ignore_eos) config.stop_token_ids = {-1};  // no token id is -1: every row runs --max-new-tokens
  auto model = xft::load_model(model_dir, load);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t produced = 0;
  if (!prompt_ids.empty()) {
    std::vector<std::vector<int64_t>> ids;
    for (const auto& p : prompt_ids) ids.push_back(parse_tokens(p));
    for (const auto& row : xft::generate(*model, ids, config)) {
      produced += static_cast<int64_t>(row.size());
      for (size_t i = 0; i < row.size(); ++i) std::cout << (i ? "," : "") << row[i];
      std::cout << "\n";
    }
  } else {
    auto tok = xft::Tokenizer::load(model_dir);
    for (const auto& text : xft::generate_text(*model, *tok, prompts, config)) {
      produced += static_cast<int64_t>(tok->encode(text).size());
      std::cout << text << "\n";
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "generated " << produced << " tokens in " << s << " s (" << produced / std::max(s, 1e-9)
            << " tokens/s)\n";
  return 0;
}

// --dataset names what the file must hold, so that a wrong file fails before the model loads.
void check_dataset(const std::vector<xft::Problem>& problems, const std::string& dataset, const std::string& path) {
  if (dataset.empty()) return;
  XFT_CHECK(problems.front().kind == dataset, path, ": --dataset ", dataset, " but the file holds ",
            problems.front().kind, " problems (", problems.front().task_id, ")");
}

int cmd_eval(const std::string& model_dir, const std::string& problems_path, const std::string& dataset,
             xft::EvalOptions options, xft::GenerationConfig gen, int64_t batch, const std::string& prompt) {
  const auto mode = xft::parse_prompt_mode(prompt, "--prompt");
  options.prompt = xft::prompt_style(mode, model_dir, options.limits);
  for (const auto& s : xft::stop_sequences(mode)) gen.stop.push_back(s);
  auto problems = xft::load_problems(problems_path);
  check_dataset(problems, dataset, problems_path);
  if (options.samples_path.empty() && !options.results_path.empty()) {
    const auto& out = options.results_path;
    const bool jsonl = out.size() > 6 && out.compare(out.size() - 6, 6, ".jsonl") == 0;
    options.samples_path = (jsonl ? out.substr(0, out.size() - 6) : out) + ".samples.jsonl";
  }
  auto model = xft::load_model(model_dir);
  auto tok = xft::Tokenizer::load(model_dir);
  auto generate = xft::model_generator(*model, *tok, gen, batch);
  auto report = xft::evaluate_problems(problems, generate, options);
  std::cout << report.summary() << "\n";
  if (!options.samples_path.empty()) std::cerr << "samples (EvalPlus format): " << options.samples_path << "\n";
  return 0;
}

int cmd_score(const std::string& problems_path, const std::string& samples_path, const std::string& dataset,
              const xft::ScoreOptions& options) {
  const auto problems = xft::load_problems(problems_path);
  check_dataset(problems, dataset, problems_path);
  const auto report = xft::score_samples(problems, xft::read_samples(samples_path, problems), options);
  std::cout << report.summary() << "\n";
  return 0;
}

std::string gib(double bytes) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(2);
  os << bytes / (1024.0 * 1024.0 * 1024.0);
  return os.str();
}

// Per stage, one rank: parameters, gradients, optimizer state, expert stacks, activations
// (without / with activation checkpointing), and whether the stage fits `gpu_gib`.
int cmd_plan(const std::string& config_path, const std::string& base_config, int64_t world, int64_t expert_parallel,
             bool shard_merge, double gpu_gib) {
  const auto c = xft::ExperimentConfig::load(config_path);
  const auto base = base_config.empty() ? c.base_model : base_config;
  XFT_CHECK(!base.empty(), config_path, ": no base_model (or pass --base-config)");
  XFT_CHECK(world >= 1 && expert_parallel >= 1 && world % expert_parallel == 0, "xft-tool plan: --world (", world,
            ") must be a positive multiple of --expert-parallel (", expert_parallel, ")");
  const auto dense = xft::ModelConfig::load(base);
  const int64_t stack_bytes = c.save_dtype == "float32" ? 4 : 2;
  struct Row {
    const char* name;
    const xft::TrainConfig* train;
    xft::StageKind kind;
  };
  const Row rows[] = {{"sft", &c.sft_train, xft::StageKind::kDense},
                      {"moe", &c.moe_train, xft::StageKind::kMoe},
                      {"merge", &c.merge_train, xft::StageKind::kMerge},
                      {"ewa", &c.ewa_train, xft::StageKind::kMoe}};
  // The merge's stacks split over the world (distributed.shard_merge in the config, or --shard-merge).
  const int64_t merge_shards = shard_merge || c.distributed.shard_merge ? world : 1;
  std::cout << "memory per rank (GiB) for " << config_path << ": world " << world << ", expert parallel "
            << expert_parallel << ", merge stacks over " << merge_shards << " rank" << (merge_shards > 1 ? "s" : "")
            << ", micro-batch x " << c.data.max_length << " tokens" << (c.data.packing ? " (packed rows)" : "")
            << ", fits = total with the config's checkpointing <= " << gpu_gib << " GiB\n";
  std::cout << "stage\tparams\tgrads\toptim\tstacks\tact\tact/ckpt\ttotal\ttotal/ckpt\tfits\n";
  for (const auto& r : rows) {
    xft::MemoryPlanInput in{
        dense,        c.moe,
        *r.train,     c.data.max_length,
        r.kind,       r.kind == xft::StageKind::kMoe && std::string(r.name) == "moe" ? expert_parallel : 1,
        merge_shards, stack_bytes};
    const auto m = xft::plan_stage_memory(in);
    const double chosen = m.total(r.train->activation_checkpointing);
    std::cout << r.name << "\t" << gib(m.parameters) << "\t" << gib(m.gradients) << "\t" << gib(m.optimizer) << "\t"
              << gib(m.expert_stacks) << "\t" << gib(m.activations) << "\t" << gib(m.activations_checkpointed) << "\t"
              << gib(m.total(false)) << "\t" << gib(m.total(true)) << "\t"
              << (chosen <= gpu_gib * 1024.0 * 1024.0 * 1024.0 ? "yes" : "no") << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xft-tool: look inside and convert xft / Hugging Face Llama checkpoints"};
  app.require_subcommand(1);

  std::string model_dir, tokens, out_path;
  auto* fwd =
      app.add_subcommand("forward", "write the logits for token ids as safetensors (tensor 'logits', F32 [T, vocab])");
  fwd->add_option("--model", model_dir, "model directory (config.json + safetensors)")->required();
  fwd->add_option("--tokens", tokens, "comma-separated token ids, e.g. 1,2,3")->required();
  fwd->add_option("--out", out_path, "output .safetensors file")->required();

  std::string inspect_dir;
  auto* insp = app.add_subcommand("inspect", "print the config and every tensor's shape and dtype");
  insp->add_option("dir", inspect_dir, "model directory")->required();

  // Read as the config's "moe" section is (one reader: the same names, defaults and errors).
  int64_t num_experts = 0, top_k = 0;
  std::string routing = "xft", router = "linear", aux_loss = "cv2";
  bool router_noise = false;
  double router_init_std = 0.02, aux_loss_coef = 0.01;
  uint64_t seed = 0;
  auto* up = app.add_subcommand("upcycle", "turn a dense checkpoint into an MoE whose experts copy its FFN");
  up->add_option("--model", model_dir, "dense model directory")->required();
  up->add_option("--out", out_path, "MoE model directory to write")->required();
  up->add_option("--experts", num_experts, "experts per layer N (expert 0 is shared)")->required();
  up->add_option("--top-k", top_k, "active experts per token K (including the shared one)")->required();
  up->add_option("--routing", routing, "xft | shared_no_norm | vanilla")->capture_default_str();
  up->add_option("--router", router, "linear | mlp")->capture_default_str();
  up->add_flag("--router-noise", router_noise, "noisy gating during training");
  up->add_option("--router-init-std", router_init_std, "router weight init std")->capture_default_str();
  up->add_option("--aux-loss", aux_loss, "cv2 | switch | none")->capture_default_str();
  up->add_option("--aux-loss-coef", aux_loss_coef, "load-balancing loss coefficient")->capture_default_str();
  up->add_option("--seed", seed, "router initialisation seed")->capture_default_str();

  std::vector<std::string> prompts, prompt_ids;
  xft::GenerationConfig gen;
  auto* gn = app.add_subcommand("generate", "continue prompts with the model (greedy unless --temperature > 0)");
  gn->add_option("--model", model_dir, "model directory (with its tokenizer for --prompt)")->required();
  gn->add_option("--prompt", prompts, "prompt text (repeatable: one batch)");
  gn->add_option("--prompt-ids", prompt_ids, "prompt token ids, e.g. 1,2,3 (repeatable)");
  gn->add_option("--max-new-tokens", gen.max_new_tokens, "tokens to generate at most")->capture_default_str();
  gn->add_option("--temperature", gen.temperature, "0 = greedy")->capture_default_str();
  gn->add_option("--top-p", gen.top_p, "nucleus sampling mass")->capture_default_str();
  gn->add_option("--seed", gen.seed, "sampling seed")->capture_default_str();
  gn->add_option("--stop", gen.stop, "stop sequence (repeatable)");
  std::string gen_dtype = "float32";
  bool gen_ignore_eos = false;
  gn->add_option("--dtype", gen_dtype, "weights and compute dtype")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  gn->add_flag("--ignore-eos", gen_ignore_eos, "generate --max-new-tokens tokens whatever comes (benchmarks)");

  xft::EvalOptions eval_options;
  std::string eval_prompt = "instruction";
  xft::GenerationConfig eval_gen;
  std::string problems_path, dataset;
  int64_t eval_batch = 8;
  const std::vector<std::string> datasets = {"humaneval+", "mbpp+", "humaneval", "mbpp"};
  auto* ev = app.add_subcommand(
      "eval", "pass@k on HumanEval / MBPP-style problems (--prompt: instruction, completion or chat)");
  ev->add_option("--model", model_dir, "model directory with its tokenizer")->required();
  ev->add_option("--problems", problems_path,
                 "problems (.jsonl or .jsonl.gz: HumanEvalPlus/MbppPlus as EvalPlus ships them, or HumanEval/MBPP)")
      ->required();
  ev->add_option("--dataset", dataset, "what --problems must hold")->check(CLI::IsMember(datasets));
  ev->add_option("--prompt", eval_prompt,
                 "instruction (the paper's template), completion (the task's prompt as is, for base models) or chat "
                 "(the model's own chat template)")
      ->check(CLI::IsMember({"instruction", "completion", "chat"}))
      ->capture_default_str();
  ev->add_option("--samples", eval_options.samples, "completions per problem (n)")->capture_default_str();
  ev->add_option("--k", eval_options.ks, "k of pass@k (repeatable; each <= samples)");
  ev->add_option("--temperature", eval_gen.temperature, "0 = greedy (the paper's pass@1)")->capture_default_str();
  ev->add_option("--top-p", eval_gen.top_p, "nucleus sampling mass")->capture_default_str();
  ev->add_option("--max-new-tokens", eval_gen.max_new_tokens, "tokens per completion")->capture_default_str();
  ev->add_option("--batch", eval_batch, "prompts per generation batch")->capture_default_str();
  ev->add_option("--timeout", eval_options.limits.timeout_s, "seconds per test program")->capture_default_str();
  ev->add_option("--limit", eval_options.limit, "only the first N problems")->capture_default_str();
  ev->add_option("--out", eval_options.results_path, "per-problem results (JSON lines)");
  ev->add_option("--samples-out", eval_options.samples_path,
                 "the generations in EvalPlus' samples format (default with --out: OUT's name + .samples.jsonl)");
  ev->add_flag("--resume", eval_options.resume, "reuse problems already scored in OUT.partial");
  ev->add_option("--parallelism", eval_options.parallelism, "programs run at once")->capture_default_str();
  ev->add_option("--python", eval_options.limits.python, "interpreter the programs run with")->capture_default_str();
  ev->add_flag("--unsafe-no-isolation", eval_options.limits.unsafe_no_isolation,
               "run model-written programs WITHOUT namespaces where the kernel refuses them (no security boundary)");

  xft::ScoreOptions score_options;
  std::string samples_path;
  auto* sc =
      app.add_subcommand("score", "score samples in EvalPlus' format (task_id + solution or completion per line)");
  sc->add_option("--problems", problems_path, "problems (.jsonl or .jsonl.gz), as for eval")->required();
  sc->add_option("--samples", samples_path, "samples: JSON lines, several per task for pass@k")->required();
  sc->add_option("--dataset", dataset, "what --problems must hold")->check(CLI::IsMember(datasets));
  sc->add_option("--out", score_options.results_path, "per-task results (JSON lines)");
  sc->add_option("--cache-dir", score_options.plus.cache_dir,
                 "where expected outputs are cached (default: next to --out, else not cached)");
  sc->add_option("--parallelism", score_options.plus.parallelism, "programs run at once")->capture_default_str();
  sc->add_option("--timeout", score_options.timeout_s, "HumanEval/MBPP: seconds per test program")
      ->capture_default_str();
  sc->add_option("--min-time-limit", score_options.plus.min_time_limit, "EvalPlus: per-input floor (s)")
      ->capture_default_str();
  sc->add_option("--time-limit-factor", score_options.plus.time_limit_factor, "EvalPlus: x canonical time")
      ->capture_default_str();
  sc->add_option("--python", score_options.plus.limits.python, "interpreter the programs run with")
      ->capture_default_str();
  sc->add_flag("--unsafe-no-isolation", score_options.plus.limits.unsafe_no_isolation,
               "run the programs WITHOUT namespaces where the kernel refuses them (no security boundary)");

  std::string plan_config, plan_base;
  int64_t plan_world = 1, plan_ep = 1;
  bool plan_shard_merge = false;
  double plan_gpu = 80.0;
  auto* plan = app.add_subcommand("plan", "memory per rank of each training stage of an experiment config");
  plan->add_option("--config", plan_config, "experiment config (JSON)")->required();
  plan->add_option("--base-config", plan_base, "the base model's config.json or directory (default: base_model)");
  plan->add_option("--world", plan_world, "ranks")->capture_default_str();
  plan->add_option("--expert-parallel", plan_ep, "ranks the MoE stage's routed experts are split over (any split)")
      ->capture_default_str();
  plan->add_flag("--shard-merge", plan_shard_merge,
                 "the merge's expert stacks split over the world (distributed.shard_merge)");
  plan->add_option("--gpu-memory", plan_gpu, "GiB per GPU")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*fwd) return cmd_forward(model_dir, tokens, out_path);
    if (*insp) return cmd_inspect(inspect_dir);
    if (*gn) return cmd_generate(model_dir, prompts, prompt_ids, gen, gen_dtype, gen_ignore_eos);
    if (*ev) return cmd_eval(model_dir, problems_path, dataset, eval_options, eval_gen, eval_batch, eval_prompt);
    if (*sc) {
      if (score_options.plus.cache_dir.empty() && !score_options.results_path.empty()) {
        const auto parent = std::filesystem::path(score_options.results_path).parent_path();
        score_options.plus.cache_dir = parent.empty() ? "." : parent.string();
      }
      return cmd_score(problems_path, samples_path, dataset, score_options);
    }
    if (*plan) return cmd_plan(plan_config, plan_base, plan_world, plan_ep, plan_shard_merge, plan_gpu);
    if (*up) {
      const auto moe = xft::MoeConfig::from_json({{"num_experts", num_experts},
                                                  {"top_k", top_k},
                                                  {"shared_expert", routing != "vanilla"},
                                                  {"routing", routing},
                                                  {"router", router},
                                                  {"router_noise", router_noise},
                                                  {"router_init_std", router_init_std},
                                                  {"aux_loss", aux_loss},
                                                  {"aux_loss_coef", aux_loss_coef}},
                                                 "xft-tool upcycle");
      xft::UpcycleConfig options;
      options.seed = seed;
      xft::upcycle_directory(model_dir, out_path, moe, options);
      std::cout << "wrote MoE (" << moe.num_experts << " experts, top-" << moe.top_k << ", " << to_string(moe.routing)
                << " routing) to " << out_path << "\n";
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "xft-tool: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
