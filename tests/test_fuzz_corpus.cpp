// The fuzzers' committed corpora (tests/fuzz/corpus/<target>: the seeds and every input a fuzzer
// found a bug with) replayed through the same target bodies: each must end in a result or an
// xft::Error, never another exception (nor, under scripts/test.sh --sanitize, a sanitizer report).
#include <filesystem>
#include <fstream>
#include <functional>

#include "fuzz/fuzz_inputs.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

int replay(const std::string& target, const std::function<void(const uint8_t*, size_t)>& body) {
  const fs::path dir = fs::path(xft::test::env_or_empty("XFT_SOURCE_DIR")) / "tests/fuzz/corpus" / target;
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string bytes = xft::test::read_all(e.path().string());
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(body(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    ++n;
  }
  return n;
}

}  // namespace

TEST(FuzzCorpus, Tokenizer) { EXPECT_GE(replay("tokenizer", xft::fuzz::tokenizer_input), 2); }
TEST(FuzzCorpus, InstructionData) { EXPECT_GE(replay("data", xft::fuzz::data_input), 5); }
TEST(FuzzCorpus, ExperimentConfig) { EXPECT_GE(replay("experiment", xft::fuzz::experiment_input), 3); }
TEST(FuzzCorpus, ProblemsAndSamples) { EXPECT_GE(replay("problems", xft::fuzz::problems_input), 3); }

// The seeds exercise what they claim: the byte-level tokenizer loads and round-trips, and a
// config including a device is refused by name instead of read forever.
TEST(FuzzCorpus, SeedsReachTheParsers) {
  const auto& tok = xft::fuzz::byte_tokenizer();
  const std::string text = "def f(x):\n\treturn \xc3\xa9 + 1\n";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  const auto seeds = xft::test::env_or_empty("XFT_SOURCE_DIR") + "/tests/fuzz/corpus/tokenizer/";
  auto merged = xft::Tokenizer::load(seeds + "bpe-merges.json");  // merges "d e", "de f", "Ġ x"
  EXPECT_EQ(merged->encode("def x"), (std::vector<int64_t>{257, 258}));
  EXPECT_EQ(merged->decode({257, 258, 259}), "def x<|eos|>");
  const auto dir = xft::test::scratch_dir("include");
  std::ofstream(dir + "/c.json") << R"({"include": "/dev/zero"})";
  xft::test::expect_error([&] { xft::ExperimentConfig::load(dir + "/c.json"); }, {"/dev/zero", "not a regular file"});
}
