// defines: BpeTokenizer
//
// BPE read from a Hugging Face tokenizer.json: the byte-level ones DeepSeek-Coder, Qwen, Llama 3,
// GPT-2 style models and SmolLM2 (byte_fallback set, as transformers' GGUF converter writes it)
// ship, and the Llama-2 style byte-fallback ones of TinyLlama, Mistral and CodeLlama. encode()
// reproduces the `tokenizers` library's encode(text, add_special_tokens=False).ids id for id;
// decode() its decode(ids) with special tokens kept. Supported: model BPE (vocab, merges in either
// form, ignore_merges, unk_token, fuse_unk, byte_fallback); added tokens (special or not,
// single_word, lstrip, rstrip, normalized); normalizers NFC, Prepend, Replace (String pattern) and
// Sequence; pre-tokenizers ByteLevel, Split (regex or string, every behaviour, invert), Digits,
// Metaspace (every prepend_scheme, split or not) and Sequence; decoders ByteLevel, ByteFallback,
// Fuse, Replace (String pattern), Strip, Metaspace and Sequence, or none. Anything else is an
// xft::Error naming the file and the component, at load time, never a silent difference.
//
// Known limits, both documented in bpe_tokenizer.cpp: NFC is taken as already done (xft links no
// Unicode normalisation tables; nearly all text is NFC, and other text keeps its code points);
// input that is not valid UTF-8 (tokenizers cannot receive it) is split at the invalid bytes and
// each such byte becomes its byte-level token, so decode(encode(s)) == s bytewise; without a
// byte-level pre-tokenizer the invalid bytes become their <0xNN> tokens (byte_fallback), else <unk>.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xft/data/tokenizer.h"

namespace xft {

class BpeTokenizer : public Tokenizer {
 public:
  // Reads tokenizer.json and, when a tokenizer_config.json lies next to it, its bos_token,
  // eos_token and pad_token (a string or {"content": ...}); those override the BOS/EOS that the
  // post_processor template adds. Throws xft::Error naming the file on bad JSON, a missing
  // field or an unsupported component.
  static std::unique_ptr<BpeTokenizer> from_file(const std::string& tokenizer_json);
  ~BpeTokenizer() override;
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // Thread-safe (a shared word cache sits behind a lock).
  std::vector<int64_t> encode(const std::string& text) const override;
  // The ByteLevel decoder gives raw bytes, never U+FFFD: where tokenizers replaces an incomplete
  // UTF-8 sequence (ids cut in the middle of a character), xft returns the bytes themselves. The
  // ByteFallback decoder is as in tokenizers: a run of <0xNN> tokens that is not UTF-8 gives one
  // U+FFFD per token.
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;
  int64_t bos_id() const override;  // -1 when neither the template nor tokenizer_config.json names one
  int64_t eos_id() const override;
  int64_t pad_id() const override;      // pad token, else EOS, else 0
  int64_t vocab_size() const override;  // largest id + 1 (model vocab and added tokens)
  // Id of a token string (added tokens first, then the model vocab); -1 when absent.
  int64_t token_to_id(const std::string& token) const;

  struct Impl;

 private:
  explicit BpeTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace xft
