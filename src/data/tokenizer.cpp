#include "xft/data/tokenizer.h"

#include <sys/stat.h>

#include <string>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "xft/core/error.h"
#include "xft/data/bpe_tokenizer.h"

namespace xft {

namespace {

// POSIX stat rather than std::filesystem: libtorch exports a clashing copy of the latter.
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  // tokenizer.json first when a directory has both: Hugging Face's fast tokenizer, read from it,
  // is the reference (Llama 2's byte-fallback BPE included). A tokenizer.json xft cannot read (a
  // Unigram model, say) next to a tokenizer.model falls back to the latter, which describes the
  // same tokenizer.
  if (is_dir(path)) {
    const std::string json = path + "/tokenizer.json", model = path + "/tokenizer.model";
    if (is_file(json) && is_file(model)) {
      try {
        return BpeTokenizer::from_file(json);
      } catch (const Error&) {
        return std::make_unique<SentencePieceTokenizer>(model);
      }
    }
    if (is_file(json)) return BpeTokenizer::from_file(json);
    if (is_file(model)) return std::make_unique<SentencePieceTokenizer>(model);
    fail(path,
         ": no tokenizer found; expected a Hugging Face tokenizer.json or a sentencepiece tokenizer.model "
         "in this directory");
  }
  XFT_CHECK(is_file(path), path,
            ": no such file or directory; expected a directory with tokenizer.json or "
            "tokenizer.model, a tokenizer.json file, or a sentencepiece .model file");
  if (ends_with(path, ".json")) return BpeTokenizer::from_file(path);
  return std::make_unique<SentencePieceTokenizer>(path);
}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_file)
    : file_(model_file), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->Load(model_file);
  XFT_CHECK(status.ok(), model_file, ": cannot load as a sentencepiece model (", status.ToString(), ")");
  XFT_CHECK(sp_->eos_id() >= 0, model_file, ": the sentencepiece model defines no EOS piece; one is expected");
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  XFT_CHECK(status.ok(), file_, ": sentencepiece cannot encode the text (", status.ToString(), ")");
  return std::vector<int64_t>(ids.begin(), ids.end());
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int> narrow;
  narrow.reserve(ids.size());
  const int64_t n = vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    XFT_CHECK(ids[i] >= 0 && ids[i] < n, file_, ": cannot decode id ", ids[i], " at position ", i,
              ": expected an id in [0, ", n, ")");
    narrow.push_back(static_cast<int>(ids[i]));
  }
  std::string text;
  const auto status = sp_->Decode(narrow, &text);
  XFT_CHECK(status.ok(), file_, ": sentencepiece cannot decode (", status.ToString(), ")");
  return text;
}

int64_t SentencePieceTokenizer::bos_id() const { return sp_->bos_id(); }
int64_t SentencePieceTokenizer::eos_id() const { return sp_->eos_id(); }
int64_t SentencePieceTokenizer::pad_id() const {
  if (sp_->pad_id() >= 0) return sp_->pad_id();
  return sp_->eos_id() >= 0 ? sp_->eos_id() : 0;
}
int64_t SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

void train_sentencepiece(const std::string& text_file, const std::string& model_prefix, int64_t vocab_size) {
  XFT_CHECK(is_file(text_file), text_file, ": cannot train a tokenizer: expected a readable UTF-8 text file");
  XFT_CHECK(vocab_size > 260, "train_sentencepiece: vocab_size ", vocab_size,
            " is too small; expected more than 260 (256 byte pieces + pad/unk/bos/eos + characters)");
  // The map form rather than an argument string: paths may contain spaces.
  const std::unordered_map<std::string, std::string> args = {
      {"input", text_file},
      {"model_prefix", model_prefix},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      // Determinism: read every sentence in file order, one thread.
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", "1"},
      // Code: keep indentation, runs of spaces, tabs and every digit as written. The identity rule
      // stops NFKC from folding characters; no dummy prefix, so encode(a)+encode(b) decodes to a+b.
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"max_sentence_length", "65536"},
      {"minloglevel", "1"},  // sentencepiece logs every training step at INFO otherwise
  };
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  XFT_CHECK(status.ok(), text_file, ": sentencepiece training failed (", status.ToString(), ")");
}

}  // namespace xft
