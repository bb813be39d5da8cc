// Sequence packing (data.packing): first-fit rows and the per-document layout, the same logits,
// loss and gradients as unpacked batches, and a packed training run against the unpacked one.
#include "test_util.h"
#include "tiny_training.h"
#include "xft/data/batcher.h"
#include "xft/data/packing.h"
#include "xft/train/loss.h"
#include "xft/train/trainer.h"

using namespace xft;
using namespace xft::test;

TEST(Packing, FirstFitRowsAndPerDocumentLayout) {
  EXPECT_EQ(pack_rows({5, 4, 3, 2, 6}, 9), (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4}}));
  xft::test::expect_error([] { pack_rows({3, 10}, 9); }, {"example 1", "10 tokens", "max_length = 9"});
  const auto dir = xft::test::scratch_dir("layout");
  auto data = tiny_data(dir, 5, 23);
  const std::vector<int64_t> idx = {4, 0, 2};
  const int64_t row = static_cast<int64_t>(data[4].input_ids.size() + data[0].input_ids.size());
  const auto b = collate_packed(data, idx, 0, row);
  const auto u = collate(data, idx, 0);
  EXPECT_EQ(b.loss_tokens, u.loss_tokens);
  EXPECT_EQ(b.tokens, u.tokens);
  EXPECT_TRUE(b.needs_mask);
  // Row 0 holds examples 4 and 0 end to end: documents 1 and 2, positions restarting at 0.
  const auto n4 = static_cast<int64_t>(data[4].input_ids.size());
  EXPECT_EQ(b.attention_mask[0][n4 - 1].item<int64_t>(), 1);
  EXPECT_EQ(b.attention_mask[0][n4].item<int64_t>(), 2);
  EXPECT_EQ(b.position_ids[0][n4].item<int64_t>(), 0);
  EXPECT_EQ(b.input_ids[0][n4].item<int64_t>(), data[0].input_ids[0]);
  EXPECT_EQ(b.labels[0][n4].item<int64_t>(), kIgnoreLabel);
}

// Packed rows give every example its unpacked logits (no attention across documents, RoPE
// restarting), and the packed batch the unpacked batch's loss and gradient, aux loss included
// (it counts real tokens only, so the padding of either layout changes nothing).
TEST(Packing, SameLogitsLossAndGradientsAsUnpacked) {
  const auto dir = xft::test::scratch_dir("packed");
  auto data = tiny_data(dir, 7, 24);
  const std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5, 6};
  const auto u = collate(data, idx, 0);
  const auto p = collate_packed(data, idx, 0, 24);
  ASSERT_LT(p.input_ids.size(0), u.input_ids.size(0));  // some rows hold several documents
  auto dense = CausalLM(tiny_dense());
  dense->init_weights(0.05, 4);
  auto moe = tiny_moe(dir + "/moe");
  for (auto* model : {dense.get(), moe.get()}) {
    model->eval();
    {
      torch::NoGradGuard ng;
      const auto lu = model->forward(u.input_ids, u.attention_mask).logits;
      const auto lp = model->forward(p.input_ids, p.attention_mask, p.position_ids).logits;
      // Find each example in the packed rows by its document number.
      for (int64_t r = 0; r < p.input_ids.size(0); ++r) {
        int64_t t = 0;
        while (t < p.input_ids.size(1) && p.attention_mask[r][t].item<int64_t>() > 0) {
          const int64_t d = p.attention_mask[r][t].item<int64_t>();
          int64_t len = 0;
          while (t + len < p.input_ids.size(1) && p.attention_mask[r][t + len].item<int64_t>() == d) ++len;
          // The unpacked row with these ids.
          bool found = false;
          for (int64_t e = 0; e < u.input_ids.size(0) && !found; ++e) {
            if (u.attention_mask[e].sum().item<int64_t>() != len) continue;
            if (!torch::equal(u.input_ids[e].narrow(0, 0, len), p.input_ids[r].narrow(0, t, len))) continue;
            found = true;
            EXPECT_LE(max_abs_diff(lp[r].narrow(0, t, len), lu[e].narrow(0, 0, len)), 1e-5)
                << "row " << r << " doc " << d;
          }
          EXPECT_TRUE(found) << "row " << r << " doc " << d;
          t += len;
        }
      }
    }
    model->train();
    auto [loss_u, grads_u] = loss_and_grads(*model, u);
    auto [loss_p, grads_p] = loss_and_grads(*model, p);
    EXPECT_NEAR(loss_p.item<double>(), loss_u.item<double>(), 1e-4);  // a sum over ~50 tokens
    ASSERT_EQ(grads_u.size(), grads_p.size());
    for (size_t i = 0; i < grads_u.size(); ++i)
      if (grads_u[i].defined()) {
        EXPECT_LE(max_abs_diff(grads_p[i], grads_u[i]), 1e-5) << "parameter " << i;
      }
  }
}

// data.packing in the trainer: the same examples per micro-batch, so the same losses (within
// rounding) and token counts; and a packed run resumed from a checkpoint is the uninterrupted one.
TEST(Packing, TrainerLossesMatchUnpackedAndResumeIsExact) {
  const auto dir = xft::test::scratch_dir("packrun");
  tiny_moe(dir + "/moe");
  auto data = tiny_data(dir, 20, 25);
  auto cfg = tiny_train(4);
  cfg.save_every = 2;
  train_saved(dir + "/moe", "moe", data, cfg, dir + "/a");
  train_saved(dir + "/moe", "moe", data, cfg, dir + "/b", /*packed_rows=*/32);
  const auto la = losses(dir + "/a/metrics.jsonl"), lb = losses(dir + "/b/metrics.jsonl");
  ASSERT_EQ(lb.size(), 4u);
  EXPECT_NEAR(la[0], lb[0], 1e-5);
  EXPECT_NEAR(xft::test::metric(dir + "/a/metrics.jsonl", "aux_loss")[0],
              xft::test::metric(dir + "/b/metrics.jsonl", "aux_loss")[0], 1e-5);
  EXPECT_EQ(xft::test::metric(dir + "/a/metrics.jsonl", "tokens"),
            xft::test::metric(dir + "/b/metrics.jsonl", "tokens"));
  auto c = load_model(dir + "/moe");
  Trainer crashing("moe", c, model_tensors(*c), data, cfg, dir + "/c", 0);
  crashing.set_packing(32);
  crashing.set_after_step([](int64_t step, int64_t) {
    if (step == 3) throw std::runtime_error("simulated crash");
  });
  EXPECT_THROW(crashing.run(false), std::runtime_error);
  train_saved(dir + "/moe", "moe", data, cfg, dir + "/c", /*packed_rows=*/32, /*resume=*/true);
  EXPECT_EQ(losses(dir + "/c/metrics.jsonl"), lb);
}
