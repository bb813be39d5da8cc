// The normalizer, pre-tokenizer and decoder of a tokenizer.json (see bpe_pipeline.h): reading them,
// and running the normalizers and the decoder chain as `tokenizers` does. Supported are what the
// byte-level BPEs (GPT-2, DeepSeek-Coder, Qwen, SmolLM2) and the Llama-2 style byte-fallback BPEs
// (TinyLlama, Mistral, CodeLlama; old Prepend/Replace form and newer Metaspace form) use.
#include "data/bpe_pipeline.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"

namespace xft::bpe {

using json = nlohmann::json;

namespace {

bool flag(const json& j, const char* key, bool fallback = false) {
  return j.contains(key) && !j.at(key).is_null() ? j.at(key).get<bool>() : fallback;
}
std::string type_of(const json& j) { return j.contains("type") ? j.at("type").get<std::string>() : "(none)"; }

bool is_one_char(const std::string& s) { return !s.empty() && utf8_len(s, 0) == s.size(); }

// A Replace's pattern: only {"String": ...} (Llama's "▁" <-> " "); a Regex pattern is refused.
std::string string_pattern(const json& r, const std::string& where) {
  const json& pattern = r.at("pattern");
  XFT_CHECK(pattern.is_object() && pattern.contains("String"), where,
            ": only a String pattern is supported; expected \"pattern\": {\"String\": ...}, got ", pattern.dump());
  std::string s = pattern.at("String").get<std::string>();
  XFT_CHECK(!s.empty(), where, ": the String pattern is empty; expected the text to replace");
  return s;
}

// Metaspace's fields, shared by the pre-tokenizer and the decoder. tokenizers >= 0.19 writes
// prepend_scheme and split; older files only add_prefix_space, where true means "always" and
// false is refused by tokenizers unless prepend_scheme is "never" (so it is here).
void read_metaspace(const json& m, const std::string& where, std::string& replacement, PrependScheme& prepend,
                    bool& split) {
  replacement = m.at("replacement").get<std::string>();
  XFT_CHECK(is_one_char(replacement), where, ": replacement \"", replacement, "\": expected one character");
  std::string scheme = "always";
  if (m.contains("prepend_scheme") && !m.at("prepend_scheme").is_null())
    scheme = m.at("prepend_scheme").get<std::string>();
  const std::pair<const char*, PrependScheme> names[] = {
      {"always", PrependScheme::Always}, {"first", PrependScheme::First}, {"never", PrependScheme::Never}};
  const auto it = std::find_if(std::begin(names), std::end(names), [&](const auto& n) { return scheme == n.first; });
  XFT_CHECK(it != std::end(names), where, ": prepend_scheme \"", scheme,
            "\" is unknown; expected always, first or never");
  prepend = it->second;
  XFT_CHECK(flag(m, "add_prefix_space", true) || prepend == PrependScheme::Never, where,
            ": add_prefix_space false contradicts prepend_scheme \"", scheme,
            "\" (tokenizers refuses it too); expected "
            "prepend_scheme \"never\"");
  split = flag(m, "split", true);
}

// The Unicode normalization form a normalizer type names, if it names one.
std::optional<UnicodeForm> unicode_form(const std::string& type) {
  const std::pair<const char*, UnicodeForm> names[] = {{"NFC", UnicodeForm::kNfc},
                                                       {"NFD", UnicodeForm::kNfd},
                                                       {"NFKC", UnicodeForm::kNfkc},
                                                       {"NFKD", UnicodeForm::kNfkd}};
  for (const auto& [name, form] : names)
    if (type == name) return form;
  return std::nullopt;
}

void read_normalizer(const json& n, const std::string& file, Pipeline& p) {
  if (n.is_null()) return;
  const std::string type = type_of(n);
  if (type == "Sequence") {
    for (const json& s : n.at("normalizers")) read_normalizer(s, file, p);
  } else if (const auto form = unicode_form(type)) {
    p.normalizers.push_back({Normalizer::Kind::Unicode, "", "", *form});
  } else if (type == "Prepend") {
    p.normalizers.push_back({Normalizer::Kind::Prepend, n.at("prepend").get<std::string>(), ""});
  } else if (type == "Replace") {
    const std::string from = string_pattern(n, file + ": normalizer Replace");
    p.normalizers.push_back({Normalizer::Kind::Replace, from, n.at("content").get<std::string>()});
  } else {
    fail(file, ": normalizer \"", type,
         "\" is not supported; expected none, NFC, NFD, NFKC, NFKD, Prepend, Replace (String pattern) "
         "or a Sequence of these");
  }
}

void read_pre_tokenizer(const json& j, const std::string& file, Pipeline& p) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  const std::string where = file + ": pre_tokenizer " + type;
  Step step;
  if (type == "Sequence") {
    for (const json& s : j.at("pretokenizers")) read_pre_tokenizer(s, file, p);
    return;
  } else if (type == "ByteLevel") {
    step.byte_level = p.byte_level_pre = true;
    step.add_prefix_space = flag(j, "add_prefix_space", true);
    if (flag(j, "use_regex", true)) step.regex = gpt2_regex();
  } else if (type == "Split") {
    const json& pattern = j.at("pattern");
    const bool literal = pattern.contains("String");
    XFT_CHECK(literal || pattern.contains("Regex"), where,
              ": expected a pattern {\"Regex\": ...} or {\"String\": ...}");
    step.regex =
        std::make_shared<const Regex>(pattern.at(literal ? "String" : "Regex").get<std::string>(), literal, where);
    const std::string b = j.at("behavior").get<std::string>();
    const std::pair<const char*, Behavior> names[] = {{"Removed", Behavior::Removed},
                                                      {"Isolated", Behavior::Isolated},
                                                      {"MergedWithPrevious", Behavior::MergedWithPrevious},
                                                      {"MergedWithNext", Behavior::MergedWithNext},
                                                      {"Contiguous", Behavior::Contiguous}};
    const auto it = std::find_if(std::begin(names), std::end(names), [&](const auto& n) { return b == n.first; });
    XFT_CHECK(it != std::end(names), where, ": behavior \"", b,
              "\" is unknown; expected Removed, Isolated, "
              "MergedWithPrevious, MergedWithNext or Contiguous");
    step.behavior = it->second;
    step.invert = flag(j, "invert");
  } else if (type == "Digits") {
    // One piece per digit, or per run of digits (Contiguous over single-digit matches = \p{N}+).
    step.regex = std::make_shared<const Regex>(flag(j, "individual_digits") ? "\\p{N}" : "\\p{N}+", false, where);
  } else if (type == "Metaspace") {
    step.metaspace = true;
    read_metaspace(j, where, step.replacement, step.prepend, step.split);
  } else {
    fail(file, ": pre_tokenizer \"", type,
         "\" is not supported; expected ByteLevel, Split, Digits, Metaspace or a "
         "Sequence of these");
  }
  p.steps.push_back(std::move(step));
}

void read_decoder(const json& d, const std::string& file, Pipeline& p) {
  if (d.is_null()) return;
  p.has_decoder = true;
  const std::string type = type_of(d);
  const std::string where = file + ": decoder " + type;
  Decoder dec;
  if (type == "Sequence") {
    for (const json& s : d.at("decoders")) read_decoder(s, file, p);
    return;
  } else if (type == "ByteLevel") {
    dec.kind = Decoder::Kind::ByteLevel;
  } else if (type == "ByteFallback") {
    dec.kind = Decoder::Kind::ByteFallback;
  } else if (type == "Fuse") {
    dec.kind = Decoder::Kind::Fuse;
  } else if (type == "Replace") {
    dec.kind = Decoder::Kind::Replace;
    dec.text = string_pattern(d, where);
    dec.with = d.at("content").get<std::string>();
  } else if (type == "Strip") {
    dec.kind = Decoder::Kind::Strip;
    dec.text = d.at("content").get<std::string>();
    XFT_CHECK(is_one_char(dec.text), where, ": content \"", dec.text, "\": expected one character");
    dec.start = d.at("start").get<size_t>(), dec.stop = d.at("stop").get<size_t>();
  } else if (type == "Metaspace") {
    dec.kind = Decoder::Kind::Metaspace;
    bool split = true;
    read_metaspace(d, where, dec.text, dec.prepend, split);
  } else {
    fail(file, ": decoder \"", type,
         "\" is not supported; expected ByteLevel, ByteFallback, Fuse, Replace (String "
         "pattern), Strip, Metaspace, a Sequence of these, or none");
  }
  p.decoders.push_back(std::move(dec));
}

// ------------------------------------------------------------------------------------ decoders

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The byte a "<0xNN>" token stands for, else -1. As Rust's u8::from_str_radix(.., 16) reads the
// two characters: hex digits of either case, or a '+' and one digit.
int byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  const auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  if (t[3] == '+' && lo >= 0) return lo;
  return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}

// tokenizers' ByteFallback: each run of byte tokens becomes its text when the bytes are UTF-8,
// else one U+FFFD per byte (the whole run, even where part of it would be valid).
std::vector<std::string> byte_fallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string run;
  const auto flush = [&] {
    if (valid_utf8(run)) {
      if (!run.empty()) out.push_back(run);
    } else {
      out.insert(out.end(), run.size(), "\xEF\xBF\xBD");
    }
    run.clear();
  };
  for (std::string& t : tokens) {
    const int b = byte_token(t);
    if (b >= 0) {
      run += static_cast<char>(b);
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  return out;
}

// tokenizers' ByteLevel decoder: a token made only of byte stand-ins gives those bytes, any other
// (an added token such as <｜begin▁of▁sentence｜>) its text; the result is one token.
std::string byte_level(const std::vector<std::string>& tokens) {
  const ByteTable& table = byte_table();
  std::string out;
  for (const std::string& token : tokens) {
    std::string bytes;
    size_t k = 0;
    for (; k < token.size(); k += char_len(token, k)) {
      const uint32_t cp = code_point(token, k);
      if (cp >= table.byte.size() || table.byte[cp] < 0) break;
      bytes += static_cast<char>(table.byte[cp]);
    }
    out += k >= token.size() ? bytes : token;
  }
  return out;
}

// tokenizers' Strip: up to `start` leading and `stop` trailing `c` characters off one token
// (where tokenizers would panic on an empty or fully stripped token, the result is empty).
std::string strip(const std::string& t, const std::string& c, size_t start, size_t stop) {
  std::vector<size_t> at;  // character starts
  for (size_t k = 0; k < t.size(); k += char_len(t, k)) at.push_back(k);
  const auto is_c = [&](size_t i) { return t.compare(at[i], c.size(), c) == 0 && char_len(t, at[i]) == c.size(); };
  size_t begin = 0, end = at.size();
  while (begin < std::min(start, at.size()) && is_c(begin)) ++begin;
  for (size_t i = 0; i < stop && end > 0 && is_c(end - 1); ++i) --end;
  if (end <= begin) return "";
  return t.substr(at[begin], (end < at.size() ? at[end] : t.size()) - at[begin]);
}

// tokenizers' Metaspace decoder: the replacement becomes a space, except in the first token,
// where (unless prepend_scheme is never) every replacement is dropped.
std::string metaspace(const std::string& t, const Decoder& d, bool first) {
  return replace_all(t, d.text, first && d.prepend != PrependScheme::Never ? "" : " ");
}

}  // namespace

bool Pipeline::bytewise() const {
  return std::none_of(steps.begin(), steps.end(), [](const Step& s) { return s.regex || s.byte_level; });
}

Pipeline read_pipeline(const json& j, const std::string& file) {
  Pipeline p;
  read_normalizer(j.value("normalizer", json()), file, p);
  read_pre_tokenizer(j.value("pre_tokenizer", json()), file, p);
  read_decoder(j.value("decoder", json()), file, p);
  return p;
}

void normalize(const std::vector<Normalizer>& normalizers, std::string& s) {
  for (const Normalizer& n : normalizers) {
    switch (n.kind) {
      case Normalizer::Kind::Prepend:
        if (!s.empty()) s.insert(0, n.text);
        break;
      case Normalizer::Kind::Replace: s = replace_all(s, n.text, n.with); break;
      case Normalizer::Kind::Unicode: s = unicode_normalize(s, n.form); break;
    }
  }
}

std::string decode_tokens(const Pipeline& pipeline, std::vector<std::string> tokens) {
  std::string out;
  if (!pipeline.has_decoder) {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i > 0 ? " " : "") + tokens[i];
    return out;
  }
  for (const Decoder& d : pipeline.decoders) {
    switch (d.kind) {
      case Decoder::Kind::ByteLevel: tokens = {byte_level(tokens)}; break;
      case Decoder::Kind::ByteFallback: tokens = byte_fallback(std::move(tokens)); break;
      case Decoder::Kind::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens = {std::move(all)};
        break;
      }
      case Decoder::Kind::Replace:
        for (std::string& t : tokens) t = replace_all(t, d.text, d.with);
        break;
      case Decoder::Kind::Strip:
        for (std::string& t : tokens) t = strip(t, d.text, d.start, d.stop);
        break;
      case Decoder::Kind::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = metaspace(tokens[i], d, i == 0);
        break;
    }
  }
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace xft::bpe
