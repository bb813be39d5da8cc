// defines: Tokenizer (interface), SentencePieceTokenizer, train_sentencepiece
//
// The training data pipeline only needs text <-> ids and the special ids; keeping that behind an
// interface also serves the byte-level BPE of Hugging Face tokenizer.json (bpe_tokenizer.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace xft {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // No BOS/EOS is added: the data code places them itself.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Throws xft::Error on an id outside [0, vocab_size).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t bos_id() const = 0;  // -1 when the model has none (then no BOS is added)
  virtual int64_t eos_id() const = 0;
  virtual int64_t pad_id() const = 0;  // always a valid id (see SentencePieceTokenizer)
  virtual int64_t vocab_size() const = 0;

  // `path`: a directory (tokenizer.json, byte-level BPE, preferred; or tokenizer.model, sentencepiece),
  // a .json file, or a sentencepiece .model file.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& model_file);  // throws xft::Error naming the file
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t bos_id() const override;
  int64_t eos_id() const override;
  // Llama-style models define no pad piece (pad_id -1); padding is masked out anyway, so any valid
  // id does: the model's pad if it has one, else EOS, else 0.
  int64_t pad_id() const override;
  int64_t vocab_size() const override;

 private:
  std::string file_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

// Trains a BPE sentencepiece model on a UTF-8 text file (one sentence a line) and writes
// <model_prefix>.model and <model_prefix>.vocab. Ids: pad=0, unk=1, bos=2, eos=3; byte fallback
// on; whitespace, indentation and digits kept as they are (code). Deterministic for a given input.
// vocab_size must exceed 260 (the 256 byte pieces and the 4 special ones) plus the distinct
// characters of the text. Throws xft::Error with sentencepiece's status message on failure.
void train_sentencepiece(const std::string& text_file, const std::string& model_prefix, int64_t vocab_size);

}  // namespace xft
