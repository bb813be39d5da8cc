// The text side of BpeTokenizer (see bpe_text.h): UTF-8, the byte table, PCRE2 regexes with
// the semantics tokenizers gets from Oniguruma, pre-tokenizer splits (Metaspace's included) and
// added-token matching.
#include "data/bpe_text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "xft/core/error.h"

namespace xft::bpe {

namespace {

// Unicode White_Space: what the Rust regex \s of tokenizers' lstrip/rstrip means.
bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// Per-thread PCRE2 scratch: match data for the whole-match offsets, and a JIT stack larger than
// the 32 KiB default so long whitespace runs under `\s+(?!\S)` cannot exhaust it.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
  MatchScratch() {
    if (stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

}  // namespace

// ------------------------------------------------------------------------------------------ UTF-8

size_t utf8_len(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(s[k])); };
  const unsigned c = at(i);
  if (c < 0x80) return 1;
  const size_t n = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  const unsigned c1 = at(i + 1);
  if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))
    return 0;
  return n;
}
size_t char_len(std::string_view s, size_t i) { return std::max<size_t>(1, utf8_len(s, i)); }

uint32_t code_point(std::string_view s, size_t i) {
  const size_t n = char_len(s, i);
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k])); };
  if (n == 1) return b(0);
  uint32_t cp = b(0) & (0x7Fu >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(k) & 0x3F);
  return cp;
}

ByteTable::ByteTable() {
  byte.fill(-1);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const uint32_t cp = printable ? b : next++;
    chr[b] = cp < 0x80 ? std::string(1, static_cast<char>(cp))
                       : std::string{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    byte[cp] = static_cast<int>(b);
  }
}

const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

// ------------------------------------------------------------------------------------------ regex

Regex::Regex(const std::string& p, bool literal, const std::string& where) : where_(where) {
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
  // Oniguruma's Ruby syntax, as tokenizers compiles its regexes: ^ and $ match at every line, '.'
  // stops at \n, \p{..}, \s and \w are Unicode (PCRE2's UCP \s is White_Space, U+0085 included).
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), options, &err, &offset, cc);
  pcre2_compile_context_free(cc);
  XFT_CHECK(code_ != nullptr, where, ": cannot compile the regex \"", p, "\" (", pcre2_message(err), " at offset ",
            offset, ")");
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // without JIT support PCRE2 interprets instead
}

Regex::~Regex() { pcre2_code_free(code_); }

std::vector<Regex::Span> Regex::find_all(std::string_view s) const {
  std::vector<Span> spans;
  size_t pos = 0;
  bool any = false;
  while (pos <= s.size()) {
    const auto m = match(s, pos, 0);
    if (!m) break;
    if (m->first == m->second && any && spans.back().second == m->second) {
      pos += pos < s.size() ? char_len(s, pos) : 1;
      continue;
    }
    spans.push_back(*m);
    pos = m->second;
    any = true;
  }
  return spans;
}

bool Regex::matches_at_start(std::string_view s) const { return match(s, 0, PCRE2_ANCHORED).has_value(); }

std::optional<Regex::Span> Regex::match(std::string_view s, size_t from, uint32_t options) const {
  thread_local MatchScratch scratch;
  const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from,
                             options | PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  XFT_CHECK(rc >= 0, where_, ": regex matching failed (", pcre2_message(rc), ")");  // rc 0: still a match
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
  return Span{ov[0], std::max(ov[0], ov[1])};
}

const std::shared_ptr<const Regex>& gpt2_regex() {
  static const auto re = std::make_shared<const Regex>(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false, "ByteLevel regex");
  return re;
}

namespace {

// A Rust regex \w character (Alphabetic, marks, decimal digits, connectors, joiners), which
// decides whether a single_word added token stands alone.
bool is_word_char(std::string_view s, size_t i) {
  static const Regex word(R"([\p{L}\p{Nl}\p{Nd}\p{M}\p{Pc}\x{200C}\x{200D}])", false, "word-character class");
  const size_t n = utf8_len(s, i);  // a byte that is not UTF-8 is no letter (and PCRE2 must not see it)
  return n > 0 && word.matches_at_start(s.substr(i, n));
}

// Start of the character that ends at s[i - 1] (i > 0); a byte that ends no valid sequence counts
// as one character, as char_len counts it going forward.
size_t char_before(std::string_view s, size_t i) {
  for (size_t n = 2; n <= 4 && n <= i; ++n)
    if (utf8_len(s, i - n) == n) return i - n;
  return i - 1;
}

// Whitespace at s[i]; a byte that is not UTF-8 (only pipelines without regexes see one) is none.
bool is_white_space_at(std::string_view s, size_t i) { return utf8_len(s, i) > 0 && is_white_space(code_point(s, i)); }

}  // namespace

// ------------------------------------------------------------------------------ pre-tokenizers

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t done = 0;
  for (size_t k = s.find(from); k != std::string::npos; k = s.find(from, done)) {
    out.append(s, done, k - done).append(to);
    done = k + from.size();
  }
  return out.append(s, done, std::string::npos);
}

namespace {

// tokenizers' NormalizedString::split: the matches and the gaps between them cover s; the
// behaviour decides which are kept and what is merged. Empty pieces are dropped.
void split(const Regex& re, Behavior behavior, bool invert, const Piece& piece, std::vector<Piece>& out) {
  const std::string& s = piece.text;
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [b, e] : re.find_all(s)) {
    if (prev != b) parts.push_back({prev, b, invert});
    parts.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != s.size()) parts.push_back({prev, s.size(), invert});

  std::vector<Part> kept;  // is_match now means "remove"
  bool previous_match = false;
  if (behavior == Behavior::MergedWithNext) std::reverse(parts.begin(), parts.end());
  for (const Part& p : parts) {
    const bool merge =
        !kept.empty() && ((behavior == Behavior::Contiguous && p.is_match == previous_match) ||
                          ((behavior == Behavior::MergedWithPrevious || behavior == Behavior::MergedWithNext) &&
                           p.is_match && !previous_match));
    if (merge && behavior == Behavior::MergedWithNext)
      kept.back().begin = p.begin;
    else if (merge)
      kept.back().end = p.end;
    else
      kept.push_back({p.begin, p.end, behavior == Behavior::Removed && p.is_match});
    previous_match = p.is_match;
  }
  if (behavior == Behavior::MergedWithNext) std::reverse(kept.begin(), kept.end());
  for (const Part& p : kept)
    if (!p.is_match && p.end > p.begin)
      out.push_back({s.substr(p.begin, p.end - p.begin), -1, piece.at_start && p.begin == 0});
}

// tokenizers' Metaspace pre-tokenizer. The replacement is one character, so its occurrences never
// overlap and a bytewise search finds exactly the character matches; split is MergedWithNext on
// it: a piece starts at every occurrence.
void metaspace(const Step& step, const Piece& s, std::vector<Piece>& out) {
  const std::string& rep = step.replacement;
  std::string t = replace_all(s.text, " ", rep);
  const bool prepend = step.prepend == PrependScheme::Always || (step.prepend == PrependScheme::First && s.at_start);
  if (prepend && t.compare(0, rep.size(), rep) != 0) t.insert(0, rep);
  if (!step.split) return out.push_back({std::move(t), -1, s.at_start});
  size_t begin = 0;
  for (size_t k = t.find(rep, 1); k != std::string::npos; k = t.find(rep, k + rep.size())) {
    out.push_back({t.substr(begin, k - begin), -1, s.at_start && begin == 0});
    begin = k;
  }
  if (begin < t.size()) out.push_back({t.substr(begin), -1, s.at_start && begin == 0});
}

}  // namespace

void apply(const Step& step, const Piece& s, std::vector<Piece>& out) {
  if (step.metaspace) return metaspace(step, s, out);
  if (!step.byte_level) return split(*step.regex, step.behavior, step.invert, s, out);
  std::vector<Piece> words;
  Piece text = s;
  if (step.add_prefix_space && !s.text.empty() && s.text[0] != ' ') text.text.insert(0, " ");
  if (step.regex)
    split(*step.regex, Behavior::Isolated, false, text, words);
  else
    words.push_back(text);
  for (const Piece& w : words) {
    std::string mapped;
    for (const char c : w.text) mapped += byte_table().chr[static_cast<unsigned char>(c)];
    out.push_back({std::move(mapped), -1, w.at_start});
  }
}

// --------------------------------------------------------------------------------- added tokens

// tokenizers' AddedVocabulary::find_matches: leftmost-longest matches; a single_word token next
// to a word character is dropped (the scan still resumes after it); lstrip/rstrip take in the
// whitespace around the token.
void split_added(const Piece& piece, const AddedSet& set, std::vector<Piece>& out) {
  const std::string& s = piece.text;
  size_t pos = 0, done = 0;
  while (pos < s.size()) {
    const AddedToken* tok = nullptr;
    for (const AddedToken* t : set[static_cast<unsigned char>(s[pos])])
      if (s.compare(pos, t->match.size(), t->match) == 0) {
        tok = t;
        break;
      }
    if (tok == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + tok->match.size();
    pos = stop;
    if (tok->single_word) {
      if ((start > 0 && is_word_char(s, char_before(s, start))) || (stop < s.size() && is_word_char(s, stop))) continue;
    }
    if (tok->lstrip) {
      size_t b = start;
      while (b > 0 && is_white_space_at(s, char_before(s, b))) b = char_before(s, b);
      start = std::max(b, done);
    }
    if (tok->rstrip)
      while (stop < s.size() && is_white_space_at(s, stop)) stop += char_len(s, stop);
    if (done < start) out.push_back({s.substr(done, start - done), -1, piece.at_start && done == 0});
    out.push_back({s.substr(start, stop - start), tok->id});
    done = stop;
  }
  if (done < s.size()) out.push_back({s.substr(done), -1, piece.at_start && done == 0});
}

}  // namespace xft::bpe
