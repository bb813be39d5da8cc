// defines (private to src/, not installed): xft::bpe::UnicodeForm, unicode_normalize — the NFC,
// NFD, NFKC and NFKD normalizers of a tokenizer.json, through utf8proc (Debian's libutf8proc),
// whose tables follow the Unicode standard as the `unicode-normalization` crate behind Hugging
// Face tokenizers does.
#pragma once
#include <string>
#include <string_view>

namespace xft::bpe {

enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };

// `s` in normalization form `form`. tokenizers only ever sees valid UTF-8 (a Python str); xft
// also lets bytes that are not UTF-8 travel through some pipelines (bpe_tokenizer.cpp), so such
// a byte is kept as it is and the valid runs between them are normalized each on its own. So are
// the few characters newer than tokenizers' Unicode tables, which it leaves unchanged.
std::string unicode_normalize(std::string_view s, UnicodeForm form);

}  // namespace xft::bpe
