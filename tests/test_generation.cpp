// Batched generation with a KV cache against transformers' greedy generate (left padding),
// on dense and upcycled MoE checkpoints, and sampling's controls.
#include "test_util.h"
#include "xft/eval/generation.h"
#include "xft/methods/upcycle.h"
#include "xft/model/model_io.h"

using namespace xft;

namespace {
struct Expected {
  std::vector<std::vector<int64_t>> prompts, generated;
  int64_t max_new_tokens;
};
Expected expected(const std::string& fixture = "generate") {
  auto j = read_json_file(xft::test::fixture(fixture) + "/expected.json");
  return {j["prompts"].get<std::vector<std::vector<int64_t>>>(),
          j["generated"].get<std::vector<std::vector<int64_t>>>(), j["max_new_tokens"].get<int64_t>()};
}
}  // namespace

TEST(Generation, GreedyMatchesTransformersTokenForToken) {
  auto e = expected();
  auto model = load_model(xft::test::fixture("generate") + "/model");
  GenerationConfig c;
  c.max_new_tokens = e.max_new_tokens;
  auto got = generate(*model, e.prompts, c);
  ASSERT_EQ(got.size(), e.generated.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], e.generated[i]) << "prompt " << i;
  // One prompt at a time (no padding) gives the same tokens as the padded batch.
  for (size_t i = 0; i < e.prompts.size(); ++i) EXPECT_EQ(generate(*model, {e.prompts[i]}, c)[0], e.generated[i]);
}

// StableLM through the KV cache: partial rotary, qk LayerNorm (keys cached after it), qkv bias.
TEST(Generation, StableLmGreedyMatchesTransformersTokenForToken) {
  auto e = expected("generate_stablelm");
  auto model = load_model(xft::test::fixture("generate_stablelm") + "/model");
  GenerationConfig c;
  c.max_new_tokens = e.max_new_tokens;
  auto got = generate(*model, e.prompts, c);
  ASSERT_EQ(got.size(), e.generated.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], e.generated[i]) << "prompt " << i;
}

TEST(Generation, UpcycledMoeGeneratesLikeItsDenseModel) {
  auto e = expected();
  const auto dir = xft::test::scratch_dir("moe");
  MoeConfig moe;
  moe.num_experts = 4;
  moe.top_k = 3;
  upcycle_directory(xft::test::fixture("generate") + "/model", dir, moe, 5);
  auto model = load_model(dir);
  GenerationConfig c;
  c.max_new_tokens = e.max_new_tokens;
  EXPECT_EQ(generate(*model, e.prompts, c), e.generated);
}

TEST(Generation, SamplingIsSeededAndTopPNarrowsToGreedy) {
  auto e = expected();
  auto model = load_model(xft::test::fixture("generate") + "/model");
  GenerationConfig s;
  s.max_new_tokens = 8;
  s.temperature = 1.5;
  s.seed = 11;
  auto a = generate(*model, e.prompts, s);
  EXPECT_EQ(a, generate(*model, e.prompts, s));
  s.seed = 12;
  EXPECT_NE(a, generate(*model, e.prompts, s));
  s.top_p = 1e-6;  // only the most likely token survives: greedy
  auto greedy = generate(*model, e.prompts, s);
  for (size_t i = 0; i < greedy.size(); ++i) {
    std::vector<int64_t> want(e.generated[i].begin(),
                              e.generated[i].begin() + std::min<size_t>(8, e.generated[i].size()));
    EXPECT_EQ(greedy[i], want);
  }
}

TEST(Generation, StopTokensEndRowsEarly) {
  auto e = expected();
  auto model = load_model(xft::test::fixture("generate") + "/model");
  GenerationConfig c;
  c.max_new_tokens = e.max_new_tokens;
  c.stop_token_ids = {e.generated[0][3]};  // the 4th token of row 0 stops it
  auto got = generate(*model, e.prompts, c);
  EXPECT_EQ(got[0], std::vector<int64_t>(e.generated[0].begin(), e.generated[0].begin() + 3));
}
