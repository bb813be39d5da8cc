#include "data/unicode_normalization.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>

#include <utf8proc.h>

#include "data/bpe_text.h"
#include "xft/core/error.h"

namespace xft::bpe {

namespace {

// utf8proc's options for each form, as its own utf8proc_NFC & co. set them; STABLE keeps
// unassigned code points as they are, as the Unicode standard asks of a normalizer.
utf8proc_option_t options_of(UnicodeForm form) {
  const int stable = UTF8PROC_STABLE;
  switch (form) {
    case UnicodeForm::kNfc: return static_cast<utf8proc_option_t>(stable | UTF8PROC_COMPOSE);
    case UnicodeForm::kNfd: return static_cast<utf8proc_option_t>(stable | UTF8PROC_DECOMPOSE);
    case UnicodeForm::kNfkc: return static_cast<utf8proc_option_t>(stable | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case UnicodeForm::kNfkd: return static_cast<utf8proc_option_t>(stable | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  return static_cast<utf8proc_option_t>(stable);
}

// Code points whose decompositions came with Unicode versions newer than the tables of Hugging
// Face tokenizers (its unicode-normalization-alignments crate stops before Unicode 12.0): it
// leaves them as they are, and so does xft, so that ids agree. (Reiwa's square, the modifier
// letters of Unicode 13-15, segmented digits.) tests/test_bpe_tokenizer.cpp compares every code
// point with tokenizers, which keeps this list exact for the pinned tokenizers.
constexpr std::pair<char32_t, char32_t> kNewerThanTokenizers[] = {
    {0x32FF, 0x32FF},   {0xA7F2, 0xA7F4},   {0xAB69, 0xAB69},   {0x10781, 0x10785}, {0x10787, 0x107B0},
    {0x107B2, 0x107BA}, {0x11938, 0x11938}, {0x1E030, 0x1E06D}, {0x1F16C, 0x1F16C}, {0x1FBF0, 0x1FBF9}};

bool newer_than_tokenizers(char32_t c) {
  for (const auto& [first, last] : kNewerThanTokenizers)
    if (c >= first && c <= last) return true;
  return false;
}

// One run of valid UTF-8 (NUL included: the length, not a terminator, ends it).
void normalize_valid(std::string_view run, UnicodeForm form, std::string& out) {
  if (run.empty()) return;
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                          static_cast<utf8proc_ssize_t>(run.size()), &mapped, options_of(form));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(mapped, &std::free);
  XFT_CHECK(n >= 0, "Unicode normalization of ", run.size(), " bytes failed: ", utf8proc_errmsg(n));
  out.append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
}

}  // namespace

std::string unicode_normalize(std::string_view s, UnicodeForm form) {
  std::string out;
  out.reserve(s.size());
  size_t run = 0;  // start of the current valid run
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n > 0 && !newer_than_tokenizers(code_point(s, i))) {
      i += n;
      continue;
    }
    // A byte that is not UTF-8, or a character tokenizers does not normalize: kept as it is.
    normalize_valid(s.substr(run, i - run), form, out);
    const size_t kept = std::max<size_t>(n, 1);
    out.append(s.substr(i, kept));
    run = i += kept;
  }
  normalize_valid(s.substr(run), form, out);
  return out;
}

}  // namespace xft::bpe
