// defines (private to src/, not installed): xft::bpe::Pipeline — the normalizer, pre-tokenizer and
// decoder of a tokenizer.json as BpeTokenizer runs them: read_pipeline() reads them (unsupported
// components are errors naming the file), normalize() and decode_tokens() run the normalizer and
// the decoder chain the way `tokenizers` does. The pre-tokenizer steps run in bpe_text.cpp.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/bpe_text.h"
#include "data/unicode_normalization.h"

namespace xft::bpe {

// One normalizer of a (flattened) Sequence.
struct Normalizer {
  enum class Kind { Prepend, Replace, Unicode } kind = Kind::Prepend;
  std::string text;                      // Prepend: what goes in front; Replace: the String pattern
  std::string with;                      // Replace: the content
  UnicodeForm form = UnicodeForm::kNfc;  // Unicode: NFC, NFD, NFKC or NFKD
};

// One decoder of a (flattened) Sequence; each maps the list of token strings to a new list.
struct Decoder {
  enum class Kind { ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace } kind = Kind::ByteLevel;
  std::string text;            // Replace: the pattern; Strip: the character; Metaspace: the replacement
  std::string with;            // Replace: the content
  size_t start = 0, stop = 0;  // Strip: at most this many characters off the front / the back
  PrependScheme prepend = PrependScheme::Always;  // Metaspace
};

struct Pipeline {
  std::vector<Normalizer> normalizers;
  std::vector<Step> steps;
  bool byte_level_pre = false;  // a ByteLevel pre-tokenizer maps bytes to GPT-2's characters
  std::vector<Decoder> decoders;
  bool has_decoder = false;  // without one, tokenizers joins the tokens with spaces

  // No step needs a regex: the whole pipeline works on bytes, so text that is not UTF-8 can run
  // through it and reach the model as unknown characters (byte fallback, else <unk>).
  bool bytewise() const;
};

// Reads j's "normalizer", "pre_tokenizer" and "decoder"; throws xft::Error naming `file` and the
// component for what is not supported, and nlohmann::json::exception for a malformed one.
Pipeline read_pipeline(const nlohmann::json& j, const std::string& file);

// The normalizers, in order, on one piece of text (never empty: tokenizers skips empty pieces).
void normalize(const std::vector<Normalizer>& normalizers, std::string& s);

// tokenizers' Tokenizer::decode after the ids became tokens: the decoder chain, then the pieces
// joined ("" between them; " " when the file has no decoder). The ByteLevel decoder returns raw
// bytes where tokenizers would put U+FFFD for bytes that are not UTF-8.
std::string decode_tokens(const Pipeline& pipeline, std::vector<std::string> tokens);

}  // namespace xft::bpe
