// defines (private to src/, not installed): xft::bpe — the text side of BpeTokenizer: UTF-8
// helpers, GPT-2's byte table, Regex (PCRE2 behaving as the Oniguruma regexes of `tokenizers`),
// pre-tokenizer steps and the added-token matcher. bpe_pipeline.h reads the normalizer,
// pre-tokenizer and decoder of tokenizer.json; bpe_tokenizer.cpp holds the BPE model.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;  // <pcre2.h>'s pcre2_code for 8-bit code units

namespace xft::bpe {

// Length of the well-formed UTF-8 sequence at s[i]; 0 when there is none (stray continuation
// byte, overlong form, surrogate, beyond U+10FFFF, truncated sequence).
size_t utf8_len(std::string_view s, size_t i);
// Length of the character at s[i], counting a byte that starts no valid sequence as one.
size_t char_len(std::string_view s, size_t i);
uint32_t code_point(std::string_view s, size_t i);

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes for
// U+0100 onwards in byte order, so every byte is a visible character in the vocab and merges.
struct ByteTable {
  std::array<std::string, 256> chr;  // byte -> UTF-8 of its stand-in
  std::array<int, 324> byte;         // stand-in code point -> byte, -1 for other code points
  ByteTable();
};
const ByteTable& byte_table();

// A compiled regex. `literal`: a Split "String" pattern, matched as is. Thread-safe.
class Regex {
 public:
  using Span = std::pair<size_t, size_t>;
  Regex(const std::string& pattern, bool literal, const std::string& where);  // throws xft::Error naming `where`
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every match in s (valid UTF-8). An empty match where the previous match ended is skipped and
  // the search moves on one character, as the onig crate's find_iter does.
  std::vector<Span> find_all(std::string_view s) const;
  bool matches_at_start(std::string_view s) const;

 private:
  std::optional<Span> match(std::string_view s, size_t from, uint32_t options) const;
  pcre2_real_code_8* code_ = nullptr;
  std::string where_;
};

// ByteLevel's use_regex split (GPT-2's pattern).
const std::shared_ptr<const Regex>& gpt2_regex();

// Every occurrence of `from` (not empty) in s, left to right and not overlapping, replaced by `to`:
// a Replace normalizer or decoder with a String pattern.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to);

struct Piece {
  std::string text;
  int64_t id = -1;        // >= 0: an added token, left alone by later steps
  bool at_start = false;  // begins at byte 0 of the input (Metaspace's prepend_scheme "first" asks)
};

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Where Metaspace puts its replacement in front of a piece that does not start with it: every
// piece, the piece at the start of the input only, or none.
enum class PrependScheme { Always, First, Never };

// One pre-tokenizer (Sequences are flattened); Digits is a Split on \p{N} (Rust's is_numeric).
struct Step {
  std::shared_ptr<const Regex> regex;  // ByteLevel: the GPT-2 regex, or null without use_regex
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  bool byte_level = false;
  bool add_prefix_space = false;
  // Metaspace: spaces become `replacement`, which is prepended per `prepend` and, with `split`,
  // starts a new piece at each occurrence. Needs no regex, so it also runs on bytes that are not UTF-8.
  bool metaspace = false;
  std::string replacement;
  PrependScheme prepend = PrependScheme::Always;
  bool split = true;
};

// Appends the non-empty pieces `step` makes of s.
void apply(const Step& step, const Piece& s, std::vector<Piece>& out);

struct AddedToken {
  std::string content;
  // What split_added looks for: the content, put through the normalizers for a normalized token
  // (tokenizers matches those in normalized text, so it normalizes their content alike).
  std::string match;
  int64_t id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};

// The added tokens matched in one pass, by first byte, longest first (leftmost-longest matching).
using AddedSet = std::array<std::vector<const AddedToken*>, 256>;

// Appends the pieces of s: the added tokens of `set` found in it, and the text between them.
// Matching is bytewise, so s may hold bytes that are not UTF-8.
void split_added(const Piece& s, const AddedSet& set, std::vector<Piece>& out);

}  // namespace xft::bpe
