// BpeTokenizer against Hugging Face tokenizers. The fixtures (tests/python/make_bpe_fixtures.py,
// run by CTest as make_bpe_fixtures) are tokenizer.json files trained by `tokenizers` (byte-level
// ones, and Llama-2 style byte-fallback ones) and the real SmolLM2 one (CTest's import_smollm2),
// with the ids it gives for a varied corpus and HumanEval's prompts; every id must agree.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <thread>
#include <unordered_map>

#include "data/unicode_normalization.h"
#include "test_util.h"
#include "xft/core/files.h"
#include "xft/data/bpe_tokenizer.h"

namespace {

using json = nlohmann::json;
using xft::BpeTokenizer;
using xft::test::expect_error;
using xft::test::fixture;
using xft::test::scratch_dir;

std::vector<int64_t> ids_of(const json& j) { return j.get<std::vector<int64_t>>(); }

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Printable form of any bytes, for failure messages.
std::string show(const std::string& s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F)
      out += c;
    else
      out += "\\x" + std::string(1, "0123456789abcdef"[u >> 4]) + "0123456789abcdef"[u & 15];
  }
  return out;
}

// The UTF-8 of code point cp (not a surrogate).
std::string utf8(uint32_t cp) {
  const auto byte = [](uint32_t v) { return static_cast<char>(v); };
  if (cp < 0x80) return {byte(cp)};
  if (cp < 0x800) return {byte(0xC0 | (cp >> 6)), byte(0x80 | (cp & 0x3F))};
  if (cp < 0x10000) return {byte(0xE0 | (cp >> 12)), byte(0x80 | ((cp >> 6) & 0x3F)), byte(0x80 | (cp & 0x3F))};
  return {byte(0xF0 | (cp >> 18)), byte(0x80 | ((cp >> 12) & 0x3F)), byte(0x80 | ((cp >> 6) & 0x3F)),
          byte(0x80 | (cp & 0x3F))};
}

bool has_replacement_char(const std::string& s) { return s.find("\xEF\xBF\xBD") != std::string::npos; }

bool is_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80                   ? 1
                     : (c >= 0xC2 && c <= 0xDF) ? 2
                     : (c >= 0xE0 && c <= 0xEF) ? 3
                     : (c >= 0xF0 && c <= 0xF4) ? 4
                                                : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;  // (overlong and surrogate forms are not told apart here; the inputs below have none)
  }
  return true;
}

// GPT-2's byte-level character for byte b (bytes_to_unicode), as UTF-8.
std::string stand_in(unsigned char b) {
  const auto printable = [](int c) { return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE; };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int c = 0; c < b; ++c) cp += !printable(c);
  }
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

bool is_llama(const std::string& config) { return config.rfind("llama", 0) == 0; }

// ------------------------------------------------------------------------ per configuration

class Config : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return fixture("bpe/" + GetParam()); }
  // SmolLM2's tokenizer is read where the import put it, exactly as converted.
  std::string tokenizer_dir() const { return GetParam() == "smollm2" ? fixture("smollm2") : dir(); }
  json expected() const { return xft::read_json_file(dir() + "/expected.json"); }
  std::unique_ptr<BpeTokenizer> load() const { return BpeTokenizer::from_file(tokenizer_dir() + "/tokenizer.json"); }
};

TEST_P(Config, EncodeGivesTheIdsOfTokenizers) {
  const auto tok = load();
  const json e = expected();
  ASSERT_GE(e.at("encode").size(), 40u);
  for (const json& c : e.at("encode")) {
    const std::string text = c.at("text");
    EXPECT_EQ(tok->encode(text), ids_of(c.at("ids"))) << GetParam() << ": text \"" << show(text) << "\"";
  }
}

TEST_P(Config, DecodeGivesTheTextOfTokenizers) {
  const auto tok = load();
  const json e = expected();
  for (const json& c : e.at("encode")) {
    const std::string text = c.at("text"), decoded = c.at("decoded");
    // tokenizers' ByteLevel decoder puts U+FFFD where the bytes are not UTF-8 (DeepSeek-style "õ"
    // decodes to 0xF5); xft returns the bytes. Its ByteFallback decoder's U+FFFD xft reproduces.
    if (!has_replacement_char(decoded) || e.at("fffd_exact").get<bool>()) {
      EXPECT_EQ(tok->decode(ids_of(c.at("ids"))), decoded) << show(text);
    }
    if (decoded == text) {
      EXPECT_EQ(tok->decode(tok->encode(text)), text) << "round trip of \"" << show(text) << "\"";
    }
  }
  ASSERT_GE(e.at("decode").size(), 10u);
  for (const json& d : e.at("decode")) {
    EXPECT_EQ(tok->decode(ids_of(d.at("ids"))), d.at("text").get<std::string>());
    EXPECT_EQ(tok->decode(ids_of(d.at("ids")), /*skip_special_tokens=*/true), d.at("skipped").get<std::string>());
  }
}

TEST_P(Config, SpecialIdsAndVocabSize) {
  const auto tok = load();
  const json s = expected().at("special");
  EXPECT_EQ(tok->bos_id(), s.at("bos_id").get<int64_t>());
  EXPECT_EQ(tok->eos_id(), s.at("eos_id").get<int64_t>());
  EXPECT_EQ(tok->pad_id(), s.at("pad_id").get<int64_t>());
  EXPECT_EQ(tok->vocab_size(), s.at("vocab_size").get<int64_t>());
}

TEST_P(Config, TokenizerLoadPicksBpeForTheDirectoryAndTheJsonFile) {
  for (const std::string& path : {tokenizer_dir(), tokenizer_dir() + "/tokenizer.json"}) {
    const auto tok = xft::Tokenizer::load(path);
    ASSERT_NE(dynamic_cast<const BpeTokenizer*>(tok.get()), nullptr) << path;
    const json first = expected().at("encode").at(8);
    EXPECT_EQ(tok->encode(first.at("text")), ids_of(first.at("ids")));
  }
}

// Bytes that are not UTF-8 cannot reach tokenizers (it takes Python str); xft must not crash and,
// with a byte-level vocabulary, gives them back byte for byte. The Llama-style files turn each
// such byte into its <0xNN> token (<unk> where that is missing), which decode as tokenizers'
// decoders do: never into bytes that are not UTF-8.
TEST_P(Config, InvalidUtf8RoundTripsBytewise) {
  const auto tok = load();
  const std::string cases[] = {"\xFF",
                               "abc\xFF"
                               "def",
                               "\xC3(",
                               "tail \xE4\xBD",
                               "\xED\xA0\x80 surrogate",
                               "\xC0\xAF overlong",
                               "\x80\x80 lone continuation",
                               "\xF5\xFE",
                               "emoji \xF0\x9F\x98 cut",
                               std::string("nul\0inside", 10),
                               "  \xFF\t\r\n<|endoftext|>\xFF 123\xFF"};
  for (const std::string& s : cases) {
    const auto ids = tok->encode(s);
    for (const int64_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size()) << show(s);
    const std::string back = tok->decode(ids);
    if (is_llama(GetParam())) {
      EXPECT_TRUE(is_utf8(back)) << show(s) << " decoded as " << show(back);
      for (size_t i = 0; i < s.size(); ++i) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) continue;  // every other byte of these cases is part of no valid character
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        const int64_t id = tok->token_to_id(name) >= 0 ? tok->token_to_id(name) : tok->token_to_id("<unk>");
        EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end()) << show(s) << ": byte " << name;
      }
    } else if (GetParam() == "unk") {
      EXPECT_NE(std::find(ids.begin(), ids.end(), tok->token_to_id("<unk>")), ids.end()) << show(s);
    } else if (GetParam() != "splits" && GetParam() != "added") {  // these drop or add characters by design
      // Each invalid byte comes back as itself where its byte-level character is a token. SmolLM2's
      // vocabulary lacks some (0xFF's, say): those bytes become its unk token, <|endoftext|>.
      std::string want;
      for (const char c : s) {
        const auto b = static_cast<unsigned char>(c);
        want += b < 0x80 || tok->token_to_id(stand_in(b)) >= 0 ? std::string(1, c) : "<|endoftext|>";
      }
      EXPECT_EQ(show(back), show(want));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Config,
                         ::testing::Values("gpt2", "deepseek", "ignore_merges", "qwen", "added", "splits", "nfc", "nfd",
                                           "nfkc", "nfkd", "unk", "smollm2", "llama_legacy", "llama_metaspace",
                                           "llama_metaspace_split", "llama_never", "llama_partial_bytes",
                                           "llama_unicode"),
                         [](const auto& info) { return info.param; });

// --------------------------------------------------------------------------------- the rest

// Every code point through each Unicode normalizer, alone, as tokenizers normalizes it
// (unicode_forms.json lists the ones it changes; every other one must come back unchanged).
TEST(UnicodeNormalization, EveryCodePointAsTokenizers) {
  const json forms = xft::read_json_file(fixture("bpe/unicode_forms.json"));
  const std::pair<const char*, xft::bpe::UnicodeForm> names[] = {{"NFC", xft::bpe::UnicodeForm::kNfc},
                                                                 {"NFD", xft::bpe::UnicodeForm::kNfd},
                                                                 {"NFKC", xft::bpe::UnicodeForm::kNfkc},
                                                                 {"NFKD", xft::bpe::UnicodeForm::kNfkd}};
  for (const auto& [name, form] : names) {
    std::unordered_map<uint32_t, std::string> changed;
    for (const json& c : forms.at(name)) changed.emplace(c.at(0).get<uint32_t>(), c.at(1).get<std::string>());
    ASSERT_GT(changed.size(), 1000u) << name;
    int wrong = 0;
    for (uint32_t cp = 1; cp < 0x110000 && wrong < 20; ++cp) {
      if (cp >= 0xD800 && cp < 0xE000) continue;
      const std::string c = utf8(cp);
      const auto it = changed.find(cp);
      const std::string want = it == changed.end() ? c : it->second;
      const std::string got = xft::bpe::unicode_normalize(c, form);
      if (got != want) {
        ++wrong;
        ADD_FAILURE() << name << " of U+" << std::hex << cp << ": \"" << show(got) << "\", tokenizers \"" << show(want)
                      << "\"";
      }
    }
  }
}

// tokenizers < 0.20 wrote merges as "a b" strings and, before 0.14, no model "type".
TEST(BpeTokenizer, LegacyMergeStringsGiveTheSameIds) {
  const std::string src = fixture("bpe/gpt2");
  json j = xft::read_json_file(src + "/tokenizer.json");
  for (json& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  j["model"].erase("type");
  const std::string path = scratch_dir("legacy") + "/tokenizer.json";
  write_file(path, j.dump());
  const auto tok = BpeTokenizer::from_file(path);
  // Named: a range-for over .at() of a temporary would outlive it (found by the ASan suite).
  const json expected = xft::read_json_file(src + "/expected.json");
  for (const json& c : expected.at("encode"))
    EXPECT_EQ(tok->encode(c.at("text")), ids_of(c.at("ids"))) << show(c.at("text"));
}

// tokenizers ignores the "id" of added tokens and numbers them after the vocab; so must xft.
TEST(BpeTokenizer, AddedTokenIdsFollowTheVocabLikeTokenizers) {
  const std::string src = fixture("bpe/gpt2");
  json j = xft::read_json_file(src + "/tokenizer.json");
  for (json& a : j["added_tokens"]) a["id"] = a["id"].get<int64_t>() + 1000;
  const std::string path = scratch_dir("ids") + "/tokenizer.json";
  write_file(path, j.dump());
  const auto tok = BpeTokenizer::from_file(path);
  const auto reference = BpeTokenizer::from_file(src + "/tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), reference->vocab_size());
  EXPECT_EQ(tok->token_to_id("<|end_of_sentence|>"), reference->token_to_id("<|end_of_sentence|>"));
  // Named: a range-for over .at() of a temporary would outlive it (found by the ASan suite).
  const json expected = xft::read_json_file(src + "/expected.json");
  for (const json& c : expected.at("encode"))
    EXPECT_EQ(tok->encode(c.at("text")), ids_of(c.at("ids"))) << show(c.at("text"));
}

TEST(BpeTokenizer, DirectoryWithBothFilesPrefersTokenizerJson) {
  const std::string dir = scratch_dir("both");
  json j = xft::read_json_file(fixture("bpe/deepseek") + "/tokenizer.json");
  write_file(dir + "/tokenizer.json", j.dump());
  write_file(dir + "/tokenizer.model", "not a sentencepiece model");
  EXPECT_NE(dynamic_cast<const BpeTokenizer*>(xft::Tokenizer::load(dir).get()), nullptr);

  // A tokenizer.json xft cannot read (a WhitespaceSplit pre-tokenizer, say) falls back to tokenizer.model.
  std::string corpus;
  for (int i = 0; i < 200; ++i)
    corpus += "def f" + std::to_string(i) + "(x):\n    return x * " + std::to_string(i) + "\n";
  write_file(dir + "/corpus.txt", corpus);
  xft::train_sentencepiece(dir + "/corpus.txt", dir + "/tokenizer", 300);
  j["pre_tokenizer"] = {{"type", "WhitespaceSplit"}};
  write_file(dir + "/tokenizer.json", j.dump());
  EXPECT_NE(dynamic_cast<const xft::SentencePieceTokenizer*>(xft::Tokenizer::load(dir).get()), nullptr);
}

TEST(BpeTokenizer, UnsupportedOrBrokenFilesAreClearErrors) {
  const std::string dir = scratch_dir("errors");
  const std::string path = dir + "/tokenizer.json";
  const json good = xft::read_json_file(fixture("bpe/gpt2") + "/tokenizer.json");
  const auto with = [&](const std::function<void(json&)>& change) {
    json j = good;
    change(j);
    write_file(path, j.dump());
  };
  const auto load = [&] { BpeTokenizer::from_file(path); };

  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    with([&](json& j) { j["model"] = {{"type", type}, {"vocab", json::object()}}; });
    expect_error(load, {path, type, "not supported", "BPE"});
  }
  write_file(path, "{}");  // the message keeps pointing at the other ways in
  expect_error([&] { xft::Tokenizer::load(dir); },
               {path, "model type", "not supported yet", "tokenizer.model", "pretokenized"});
  write_file(path, "{\"model\": {\"type\": \"BPE\",\n  oops");
  expect_error(load, {path, "invalid JSON"});
  expect_error([&] { BpeTokenizer::from_file(dir + "/missing.json"); }, {dir + "/missing.json", "cannot open"});
  with([](json& j) { j["normalizer"] = {{"type", "BertNormalizer"}}; });
  expect_error(load, {path, "normalizer", "BertNormalizer", "not supported", "NFKC"});
  with([](json& j) {
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "NFKC_CF"}}}}};
  });
  expect_error(load, {path, "normalizer", "NFKC_CF", "not supported"});
  with([](json& j) { j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}}; });
  expect_error(load, {path, "pre_tokenizer", "Whitespace", "not supported"});
  with([](json& j) {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "([a-"}}}, {"behavior", "Isolated"}};
  });
  expect_error(load, {path, "Split", "([a-", "cannot compile"});
  with([](json& j) {
    j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
  });
  expect_error(load, {path, "Sideways", "Isolated"});
  with([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; });
  expect_error(load, {path, "decoder", "WordPiece"});
  // The Llama-2 components, where they go beyond what xft reads.
  with([](json& j) { j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", "_"}}; });
  expect_error(load, {path, "normalizer Replace", "String pattern", " +"});
  with([](json& j) { j["decoder"] = {{"type", "Replace"}, {"pattern", {{"String", ""}}}, {"content", " "}}; });
  expect_error(load, {path, "decoder Replace", "pattern is empty"});
  with([](json& j) {
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "__"}, {"prepend_scheme", "first"}};
  });
  expect_error(load, {path, "pre_tokenizer Metaspace", "\"__\"", "one character"});
  with([](json& j) {
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}};
  });
  expect_error(load, {path, "Metaspace", "sometimes", "always, first or never"});
  with([](json& j) { j["decoder"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"add_prefix_space", false}}; });
  expect_error(load, {path, "decoder Metaspace", "add_prefix_space false", "\"always\""});
  with([](json& j) { j["decoder"] = {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}}; });
  expect_error(load, {path, "decoder Strip", "one character"});
  with([](json& j) { j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "CTC"}}}}}; });
  expect_error(load, {path, "decoder", "CTC", "not supported", "ByteFallback"});
  with([](json& j) { j["model"]["byte_fallback"] = true; });  // no <0xNN> tokens: it never fires
  EXPECT_NO_THROW(load());
  with([](json& j) { j["model"]["merges"].push_back(json::array({"Ġ", "no-such-token"})); });
  expect_error(load, {path, "merges", "no-such-token"});
  with([](json& j) { j["model"]["vocab"] = json::array(); });
  expect_error(load, {path, "model.vocab"});
  with([](json& j) { j["model"]["vocab"]["far-away"] = 60000000; });  // 50 bytes that would cost 2 GB
  expect_error(load, {path, "model.vocab", "ids reach 60000000", "without large gaps"});
  with([](json& j) { j["model"]["vocab"]["near"] = j["model"]["vocab"].size() + 1000; });  // a small gap is fine
  EXPECT_NO_THROW(load());
  with([](json& j) { j["added_tokens"] = {{{"content", 7}}}; });
  expect_error(load, {path, "unexpected tokenizer.json content"});

  with([](json&) {});
  write_file(dir + "/tokenizer_config.json", R"({"eos_token": {"content": "<nope>"}})");
  expect_error(load, {dir + "/tokenizer_config.json", "eos_token", "<nope>"});
  write_file(dir + "/tokenizer_config.json", "{}");
  const auto tok = BpeTokenizer::from_file(path);
  expect_error([&] { tok->decode({1, tok->vocab_size()}); }, {path, "cannot decode id", "position 1"});
  expect_error([&] { tok->decode({-1}); }, {path, "cannot decode id -1"});
}

// Long runs of spaces or digits stress the regexes (backtracking, PCRE2's JIT stack).
TEST(BpeTokenizer, LongRunsRoundTrip) {
  // The Llama-style ones without a pre-tokenizer make the whole text one word for the merges.
  for (const std::string name : {"gpt2", "deepseek", "qwen", "llama_legacy", "llama_never", "smollm2"}) {
    const auto tok = BpeTokenizer::from_file(fixture(name == "smollm2" ? name : "bpe/" + name) + "/tokenizer.json");
    for (const std::string& s :
         {std::string(100000, ' ') + "x", std::string(50000, '7'), std::string(30000, '\n') + "y ",
          "a" + std::string(20000, '\t') + "b" + std::string(20000, ' ')}) {
      EXPECT_EQ(tok->decode(tok->encode(s)), s) << name << ": " << s.size() << " bytes";
    }
  }
}

// SmolLM2-135M-Instruct as a model directory: Tokenizer::load picks its tokenizer.json, whose
// byte_fallback is set (transformers' GGUF converter) without any <0xNN> token; bos and eos are
// both <|im_start|>, as its tokenizer_config.json says (its pad_token is none: pad is eos).
TEST(BpeTokenizer, SmolLM2DirectoryLoadsEndToEnd) {
  const auto tok = xft::Tokenizer::load(fixture("smollm2"));
  const auto* bpe = dynamic_cast<const BpeTokenizer*>(tok.get());
  ASSERT_NE(bpe, nullptr);
  const json special = xft::read_json_file(fixture("bpe/smollm2") + "/expected.json").at("special");
  EXPECT_EQ(tok->bos_id(), special.at("bos_id").get<int64_t>());
  EXPECT_EQ(tok->eos_id(), special.at("eos_id").get<int64_t>());
  EXPECT_EQ(tok->bos_id(), bpe->token_to_id("<|im_start|>"));
  EXPECT_EQ(tok->eos_id(), bpe->token_to_id("<|im_start|>"));
  EXPECT_EQ(tok->pad_id(), tok->eos_id());
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(bpe->token_to_id("<0x41>"), -1);
  const std::string chat = "<|im_start|>user\ndef f(x):\n\treturn x  # 😀 中文<|im_end|>\n<|im_start|>assistant\n";
  const auto ids = tok->encode(chat);
  EXPECT_EQ(ids.front(), bpe->token_to_id("<|im_start|>"));
  EXPECT_NE(std::find(ids.begin(), ids.end(), bpe->token_to_id("<|im_end|>")), ids.end());
  EXPECT_EQ(tok->decode(ids), chat);
  EXPECT_EQ(bpe->decode(ids, /*skip_special_tokens=*/true), "user\ndef f(x):\n\treturn x  # 😀 中文\nassistant\n");
}

// Decoder and byte-fallback details the trained files do not reach; the expected strings and ids
// are what tokenizers 0.22 gives for this file (its "<0x+F>" is byte 0x0F to u8::from_str_radix).
TEST(BpeTokenizer, ByteFallbackEdgesAsTokenizers) {
  const std::string path = scratch_dir("byte_fallback") + "/tokenizer.json";
  const std::vector<std::string> tokens = {"<unk>",
                                           "<0x+F>",
                                           "<0xe4>",
                                           "<0xBD>",
                                           "<0xA0>",
                                           "x",
                                           "<0x41>",
                                           "<0xE4>",
                                           " ",
                                           "\xE2\x96\x81",
                                           "\xE2\x96\x81\xE2\x96\x81"
                                           "a",
                                           "<0x4G>"};
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  const auto with_decoder = [&](const json& decoder) {
    const json j = {{"model",
                     {{"type", "BPE"},
                      {"vocab", vocab},
                      {"merges", json::array()},
                      {"unk_token", "<unk>"},
                      {"byte_fallback", true}}},
                    {"decoder", decoder}};
    write_file(path, j.dump());
    return BpeTokenizer::from_file(path);
  };
  const std::vector<std::vector<int64_t>> seqs = {
      {1, 2, 3, 4, 5, 7, 6}, {8, 8, 5, 8, 8}, {10, 9, 10, 11}, {7, 3, 4, 5}, {3, 4}};
  const auto bf = with_decoder({{"type", "ByteFallback"}});
  const std::vector<std::string> want = {"\x0f\xE4\xBD\xA0x\xEF\xBF\xBD\xEF\xBF\xBD", "  x  ",
                                         "\xE2\x96\x81\xE2\x96\x81"
                                         "a\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                         "a<0x4G>",
                                         "\xE4\xBD\xA0x", "\xEF\xBF\xBD\xEF\xBF\xBD"};
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(show(bf->decode(seqs[i])), show(want[i])) << i;
  // A character outside the vocab whose bytes have no tokens is <unk>; it waits while the next
  // character falls back to bytes ("A" is <0x41>), and comes after them.
  EXPECT_EQ(bf->encode("x\xC3\xA4"
                       "A"),
            (std::vector<int64_t>{5, 6, 0}));

  const json strip = {
      {"type", "Sequence"},
      {"decoders", {{{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 1}}}}};
  EXPECT_EQ(with_decoder(strip)->decode(seqs[1]), "x ");
  const auto metaspace = [&](const char* scheme) {
    return with_decoder(
        {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", scheme}, {"split", true}});
  };
  EXPECT_EQ(metaspace("never")->decode(seqs[2]), "  a   a<0x4G>");
  EXPECT_EQ(metaspace("first")->decode(seqs[2]), "a   a<0x4G>");  // every ▁ of the first token goes
}

// encode() is const and shares a word cache: threads must get the same ids.
TEST(BpeTokenizer, ConcurrentEncodingAgrees) {
  const std::string dir = fixture("bpe/deepseek");
  const auto tok = BpeTokenizer::from_file(dir + "/tokenizer.json");
  const json cases = xft::read_json_file(dir + "/expected.json").at("encode");
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round)
        for (const json& c : cases) mismatches[t] += tok->encode(c.at("text")) != ids_of(c.at("ids"));
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
