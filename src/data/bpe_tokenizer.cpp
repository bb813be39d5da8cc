// BpeTokenizer: a Hugging Face tokenizer.json BPE that follows the `tokenizers` library (Rust)
// step for step, so that the ids agree exactly:
//   1. added tokens with normalized=false (all special tokens) are cut out of the raw text;
//   2. the normalizer runs on the pieces between them, then normalized added tokens are cut out;
//   3. each pre-tokenizer splits the remaining pieces further (ByteLevel also maps bytes to chars);
//   4. the BPE merges run on every piece (a "word"), lowest merge rank first; with byte_fallback a
//      character outside the vocab becomes the <0xNN> tokens of its UTF-8 bytes.
// Steps 1 and 3 (regexes, splits, added-token matching) live in bpe_text.cpp, the reading of the
// normalizer, pre-tokenizer and decoder and the decoder chain in bpe_pipeline.cpp; this file holds
// the BPE model, the reading of the rest of tokenizer.json and of tokenizer_config.json.
//
// The NFC, NFD, NFKC and NFKD normalizers run through utf8proc (unicode_normalization.h).
// One documented difference, outside what tokenizers can be given:
// - Invalid UTF-8: tokenizers only receives valid text (Python str). xft splits the input at every
//   byte that is not part of a well-formed UTF-8 sequence; the valid runs are encoded as usual and
//   each invalid byte becomes the token of its byte-level character (or the added token with that
//   content, as DeepSeek-Coder defines for 0xC0, 0xC1, 0xF5-0xFF), else <unk>, else nothing. With
//   a byte-level vocabulary decode(encode(s)) == s byte for byte. A pipeline without regexes (Llama
//   2's Prepend/Replace normalizers or Metaspace) instead carries the invalid bytes through as
//   characters of their own, which byte_fallback turns into <0xNN> tokens (and the ByteFallback
//   decoder, as in tokenizers, into U+FFFD).
#include "xft/data/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "data/bpe_pipeline.h"
#include "data/bpe_text.h"
#include "xft/core/error.h"
#include "xft/core/files.h"

namespace xft {

using json = nlohmann::json;
using namespace bpe;  // the text side: bpe_text.h

namespace {

constexpr int64_t kMaxId = int64_t{1} << 26;  // a sanity bound: ids index a vector
constexpr int64_t kMaxHoles = 65536;          // unused ids a vocabulary may leave beyond one per token
constexpr size_t kCacheWords = 10000;         // tokenizers' BPE cache capacity
constexpr size_t kCacheMaxWordBytes = 256;    // longer words are rare and not worth caching

// Runs `f` on every piece that is not an added token; f appends what that piece becomes.
template <typename F>
std::vector<Piece> refine(std::vector<Piece> pieces, F&& f) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& p : pieces) {
    if (p.id >= 0)
      out.push_back(std::move(p));
    else
      f(p, out);
  }
  return out;
}

// --------------------------------------------------------------------------------------- model

struct BpeModel {
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges;  // (left, right) -> (rank, merged)
  int32_t unk = -1;
  bool fuse_unk = false, ignore_merges = false, byte_fallback = false;
  std::array<int32_t, 256> byte_ids{};  // byte -> id of its "<0xNN>" token, -1 when absent
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t key(int32_t a, int32_t b) {
    return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
  }
  const std::pair<uint32_t, int32_t>* merge_of(int32_t a, int32_t b) const {
    const auto it = merges.find(key(a, b));
    return it == merges.end() ? nullptr : &it->second;
  }

  // tokenizers' BPE::merge_word and Word::merge_all: characters to ids, then repeatedly the
  // lowest-ranked adjacent pair (leftmost on ties) is merged; queue entries gone stale are skipped.
  std::vector<int32_t> merge_word(const std::string& w) const {
    struct Symbol {
      int32_t id;
      int prev, next;
      size_t len;  // 0: merged into its left neighbour
    };
    std::vector<Symbol> sym;
    const auto add = [&](int32_t id, size_t len) {
      const int n = static_cast<int>(sym.size());
      sym.push_back({id, n - 1, n + 1, len});
    };
    size_t unk_len = 0;  // > 0: an <unk> waiting to be added (fused with the next one if fuse_unk)
    for (size_t i = 0; i < w.size();) {
      const size_t n = char_len(w, i);
      if (const auto it = vocab.find(w.substr(i, n)); it != vocab.end()) {
        if (unk_len > 0) add(unk, unk_len), unk_len = 0;
        add(it->second, n);
      } else if (byte_fallback && std::all_of(w.begin() + i, w.begin() + i + n,
                                              [&](char c) { return byte_ids[static_cast<unsigned char>(c)] >= 0; })) {
        // As tokenizers does, a waiting <unk> is not added first: it follows these bytes.
        for (size_t k = i; k < i + n; ++k) add(byte_ids[static_cast<unsigned char>(w[k])], 1);
      } else if (unk >= 0) {  // without an unk token, unknown characters vanish
        if (unk_len > 0 && !fuse_unk) add(unk, unk_len), unk_len = 0;
        unk_len += n;
      }
      i += n;
    }
    if (unk_len > 0) add(unk, unk_len);
    if (sym.empty()) return {};
    sym.back().next = -1;

    struct Merge {
      size_t pos;
      uint32_t rank;
      int32_t id;
    };
    const auto later = [](const Merge& a, const Merge& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    std::priority_queue<Merge, std::vector<Merge>, decltype(later)> queue(later);
    for (size_t i = 0; i + 1 < sym.size(); ++i)
      if (const auto* m = merge_of(sym[i].id, sym[i + 1].id)) queue.push({i, m->first, m->second});
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Symbol& s = sym[top.pos];
      if (s.len == 0 || s.next < 0) continue;
      const Symbol right = sym[s.next];
      const auto* m = merge_of(s.id, right.id);
      if (m == nullptr || m->second != top.id) continue;
      sym[s.next].len = 0;
      s.id = top.id;
      s.len += right.len;
      s.next = right.next;
      if (right.next >= 0) sym[right.next].prev = static_cast<int>(top.pos);
      if (s.prev >= 0)
        if (const auto* pm = merge_of(sym[s.prev].id, s.id))
          queue.push({static_cast<size_t>(s.prev), pm->first, pm->second});
      if (s.next >= 0)
        if (const auto* nm = merge_of(s.id, sym[s.next].id)) queue.push({top.pos, nm->first, nm->second});
    }
    std::vector<int32_t> ids;
    for (const Symbol& s : sym)
      if (s.len > 0) ids.push_back(s.id);
    return ids;
  }

  void tokenize(const std::string& word, std::vector<int64_t>& out) const {
    if (ignore_merges) {
      if (const auto it = vocab.find(word); it != vocab.end()) return out.push_back(it->second);
    }
    {
      std::shared_lock lock(cache_mutex);
      if (const auto it = cache.find(word); it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids = merge_word(word);
    out.insert(out.end(), ids.begin(), ids.end());
    if (word.size() < kCacheMaxWordBytes) {
      std::unique_lock lock(cache_mutex);
      if (cache.size() < kCacheWords) cache.emplace(word, std::move(ids));
    }
  }
};

bool flag(const json& j, const char* key, bool fallback = false) {
  return j.contains(key) && !j.at(key).is_null() ? j.at(key).get<bool>() : fallback;
}
std::string type_of(const json& j) { return j.contains("type") ? j.at("type").get<std::string>() : "(none)"; }

}  // namespace

// ---------------------------------------------------------------------------------- tokenizer

struct BpeTokenizer::Impl {
  std::string file;
  BpeModel model;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int64_t> added_ids;
  AddedSet raw_set, normalized_set;
  Pipeline pipe;
  std::vector<std::string> tokens;   // id -> token text
  std::vector<char> known, special;  // per id
  int64_t bos = -1, eos = -1, pad = -1;

  int64_t token_to_id(const std::string& t) const {
    if (const auto it = added_ids.find(t); it != added_ids.end()) return it->second;
    const auto it = model.vocab.find(t);
    return it == model.vocab.end() ? -1 : it->second;
  }

  // `at_start`: text begins the input (tokenizers' offset 0, which Metaspace "first" asks for).
  void encode_valid(std::string_view text, bool at_start, std::vector<int64_t>& ids) const {
    if (text.empty()) return;
    std::vector<Piece> pieces;
    split_added({std::string(text), -1, at_start}, raw_set, pieces);
    // The normalizers run on the text between the added tokens that skip them.
    pieces = refine(std::move(pieces), [&](Piece p, std::vector<Piece>& out) {
      normalize(pipe.normalizers, p.text);
      split_added(p, normalized_set, out);
    });
    for (const Step& step : pipe.steps)
      pieces = refine(std::move(pieces), [&](const Piece& p, std::vector<Piece>& out) { apply(step, p, out); });
    for (const Piece& p : pieces) {
      if (p.id >= 0)
        ids.push_back(p.id);
      else
        model.tokenize(p.text, ids);
    }
  }

  void encode_invalid_byte(unsigned char b, std::vector<int64_t>& ids) const {
    const std::string unit = pipe.byte_level_pre ? byte_table().chr[b] : std::string(1, static_cast<char>(b));
    if (const auto it = model.vocab.find(unit); it != model.vocab.end())
      ids.push_back(it->second);
    else if (const auto a = added_ids.find(unit); a != added_ids.end())
      ids.push_back(a->second);
    else if (model.unk >= 0)
      ids.push_back(model.unk);
  }

  void load_model(const json& j);
  void load_added_tokens(const json& j);
  void load_post_processor(const json& p);
  void load_tokenizer_config();
};

void BpeTokenizer::Impl::load_model(const json& j) {
  const json* m = j.contains("model") && j.at("model").is_object() ? &j.at("model") : nullptr;
  // Files older than tokenizers 0.14 leave out "type"; only BPE has merges.
  const std::string type = m == nullptr            ? "(none)"
                           : m->contains("type")   ? type_of(*m)
                           : m->contains("merges") ? "BPE"
                                                   : "(none)";
  if (type != "BPE")
    fail(file, ": model type \"", type,
         "\" is not supported yet; expected \"BPE\" (a byte-level BPE such as "
         "DeepSeek-Coder's), a sentencepiece tokenizer.model, or pre-tokenised data (data format \"pretokenized\")");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    XFT_CHECK(!m->contains(key) || m->at(key).is_null() || m->at(key) == "", file, ": BPE ", key,
              " is not supported; expected null (a byte-level or byte-fallback BPE)");
  XFT_CHECK(m->contains("vocab") && m->at("vocab").is_object(), file,
            ": model.vocab: expected an object of token -> id");
  for (const auto& [token, id] : m->at("vocab").items()) {
    XFT_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < kMaxId, file, ": model.vocab[\"",
              token, "\"]: expected an id in [0, ", kMaxId, ")");
    model.vocab.emplace(token, id.get<int32_t>());
  }
  XFT_CHECK(m->contains("merges") && m->at("merges").is_array(), file, ": model.merges: expected an array");
  const json& merges = m->at("merges");
  const auto vocab_id = [&](const std::string& t, size_t i) {
    const auto it = model.vocab.find(t);
    XFT_CHECK(it != model.vocab.end(), file, ": model.merges[", i, "] needs the token \"", t,
              "\", which is not in model.vocab");
    return it->second;
  };
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    std::string a, b;
    if (e.is_string()) {  // "a b", the form of tokenizers < 0.20
      const std::string& s = e.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      XFT_CHECK(space != std::string::npos, file, ": model.merges[", i, "] \"", s,
                "\": expected two tokens separated by a space");
      a = s.substr(0, space), b = s.substr(space + 1);
    } else {
      XFT_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(), file, ": model.merges[", i,
                "]: expected \"a b\" or [\"a\", \"b\"]");
      a = e[0].get<std::string>(), b = e[1].get<std::string>();
    }
    // Rank = position; a repeated pair keeps the later rank, as tokenizers' map does.
    model.merges[BpeModel::key(vocab_id(a, i), vocab_id(b, i))] = {static_cast<uint32_t>(i), vocab_id(a + b, i)};
  }
  if (m->contains("unk_token") && !m->at("unk_token").is_null()) {
    const std::string unk = m->at("unk_token").get<std::string>();
    const auto it = model.vocab.find(unk);
    XFT_CHECK(it != model.vocab.end(), file, ": model.unk_token \"", unk, "\" is not in model.vocab");
    model.unk = it->second;
  }
  model.fuse_unk = flag(*m, "fuse_unk");
  model.ignore_merges = flag(*m, "ignore_merges");
  // byte_fallback: tokenizers looks up format!("<{b:#04X}>"), i.e. "<0x0A>", for each byte.
  model.byte_fallback = flag(*m, "byte_fallback");
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto it = model.vocab.find(name);
    model.byte_ids[b] = it == model.vocab.end() ? -1 : it->second;
  }
  // "dropout" is ignored: it samples merges at random, and training data must tokenize the same way each time.
}

void BpeTokenizer::Impl::load_added_tokens(const json& j) {
  if (!j.contains("added_tokens") || j.at("added_tokens").is_null()) return;
  // tokenizers does not read the "id" fields: a token already in the vocab keeps its vocab id, any
  // other gets the next id after the vocab and the tokens before it. Ids are assigned the same way.
  const int64_t model_size = static_cast<int64_t>(model.vocab.size());
  int64_t max_id = -1;
  for (const json& a : j.at("added_tokens")) {
    AddedToken t;
    t.content = a.at("content").get<std::string>();
    t.special = flag(a, "special");
    t.single_word = flag(a, "single_word"), t.lstrip = flag(a, "lstrip"), t.rstrip = flag(a, "rstrip");
    t.normalized = flag(a, "normalized", !t.special);
    if (t.content.empty() || added_ids.count(t.content) > 0) continue;
    const auto v = model.vocab.find(t.content);
    t.id = v != model.vocab.end() ? v->second : (max_id >= model_size || model_size == 0) ? max_id + 1 : model_size;
    max_id = std::max(max_id, t.id);
    added_ids.emplace(t.content, t.id);
    t.match = t.content;
    if (t.normalized) normalize(pipe.normalizers, t.match);
    added.push_back(std::move(t));
  }
  for (const AddedToken& t : added)
    (t.normalized ? normalized_set : raw_set)[static_cast<unsigned char>(t.match[0])].push_back(&t);
  for (AddedSet* set : {&raw_set, &normalized_set})
    for (auto& bucket : *set)
      std::stable_sort(bucket.begin(), bucket.end(),
                       [](auto* x, auto* y) { return x->match.size() > y->match.size(); });
}

// BOS/EOS from the template that tokenizers would add around a single sequence ("<bos> $A").
void BpeTokenizer::Impl::load_post_processor(const json& p) {
  if (p.is_null()) return;
  const std::string type = type_of(p);
  if (type == "Sequence") {
    for (const json& s : p.at("processors")) load_post_processor(s);
  } else if (type == "TemplateProcessing") {
    const json& single = p.at("single");
    const auto id_of = [&](const json& item) {
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const json& specials = p.value("special_tokens", json::object());
      if (specials.contains(name) && !specials[name].value("ids", json::array()).empty())
        return specials[name]["ids"][0].get<int64_t>();
      const int64_t id = token_to_id(name);
      XFT_CHECK(id >= 0, file, ": post_processor template names \"", name, "\", which is not a token");
      return id;
    };
    if (!single.empty() && single.front().contains("SpecialToken")) bos = id_of(single.front());
    if (single.size() > 1 && single.back().contains("SpecialToken")) eos = id_of(single.back());
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    bos = p.at("cls").at(1).get<int64_t>();
    eos = p.at("sep").at(1).get<int64_t>();
  }  // ByteLevel and others add no special token
}

// transformers' tokenizer_config.json names bos/eos/pad; it wins over the template.
void BpeTokenizer::Impl::load_tokenizer_config() {
  const std::string path = (std::filesystem::path(file).parent_path() / "tokenizer_config.json").string();
  if (!std::filesystem::is_regular_file(path)) return;
  const json c = read_json_file(path);
  XFT_CHECK(c.is_object(), path, ": expected a JSON object");
  const std::pair<const char*, int64_t*> fields[] = {{"bos_token", &bos}, {"eos_token", &eos}, {"pad_token", &pad}};
  for (const auto& [key, target] : fields) {
    if (!c.contains(key)) continue;
    const json& v = c.at(key);
    const json* name = v.is_object() && v.contains("content") ? &v.at("content") : &v;
    if (name->is_null()) continue;  // none named here: the template's (if any) stays
    XFT_CHECK(name->is_string(), path, ": ", key, ": expected a string or {\"content\": string}");
    *target = token_to_id(name->get<std::string>());
    XFT_CHECK(*target >= 0, path, ": ", key, " \"", name->get<std::string>(), "\" is not a token of ", file);
  }
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_file(const std::string& tokenizer_json) {
  auto t = std::make_unique<Impl>();
  t->file = tokenizer_json;
  const json j = read_json_file(tokenizer_json);
  XFT_CHECK(j.is_object(), tokenizer_json, ": expected a JSON object (a Hugging Face tokenizer.json)");
  try {
    t->load_model(j);
    t->pipe = read_pipeline(j, tokenizer_json);  // before the added tokens: normalized ones go through it
    t->load_added_tokens(j);
    t->load_post_processor(j.value("post_processor", json()));
  } catch (const json::exception& e) {
    fail(tokenizer_json, ": unexpected tokenizer.json content (", e.what(), ")");
  }
  try {
    t->load_tokenizer_config();
  } catch (const json::exception& e) {
    fail(tokenizer_json, ": unexpected tokenizer_config.json content next to it (", e.what(), ")");
  }
  int64_t size = 0;
  for (const auto& [token, id] : t->model.vocab) size = std::max<int64_t>(size, id + 1);
  for (const AddedToken& a : t->added) size = std::max(size, a.id + 1);
  // Ids index vectors of size max id + 1, so a few bytes naming one huge id would cost gigabytes
  // (found by scripts/fuzz.sh tokenizer). Real files number their tokens 0..N-1, holes at most a
  // handful of reserved ids; allow up to as many holes as tokens, plus kMaxHoles.
  const int64_t named = static_cast<int64_t>(t->model.vocab.size() + t->added.size());
  XFT_CHECK(size <= 2 * named + kMaxHoles, tokenizer_json, ": model.vocab and added_tokens name ", named,
            " tokens but their ids reach ", size - 1, "; expected ids numbered from 0 without large gaps (at most ",
            named + kMaxHoles, " unused ids)");
  t->tokens.resize(size);
  t->known.assign(size, 0);
  t->special.assign(size, 0);
  for (const auto& [token, id] : t->model.vocab) t->tokens[id] = token, t->known[id] = 1;
  for (const AddedToken& a : t->added) t->tokens[a.id] = a.content, t->known[a.id] = 1, t->special[a.id] = a.special;
  for (const int64_t id : {t->bos, t->eos, t->pad})
    XFT_CHECK(id < size, tokenizer_json, ": special token id ", id, " is outside the vocabulary (size ", size, ")");
  return std::unique_ptr<BpeTokenizer>(new BpeTokenizer(std::move(t)));
}

BpeTokenizer::BpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeTokenizer::~BpeTokenizer() = default;

std::vector<int64_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  if (impl_->pipe.bytewise()) {  // no regex to feed: invalid bytes travel as characters (top of the file)
    impl_->encode_valid(text, true, ids);
    return ids;
  }
  const std::string_view view(text);
  size_t run = 0;  // start of the current valid UTF-8 run
  for (size_t i = 0; i < text.size();) {
    if (const size_t n = utf8_len(view, i)) {
      i += n;
      continue;
    }
    impl_->encode_valid(view.substr(run, i - run), run == 0, ids);
    impl_->encode_invalid_byte(static_cast<unsigned char>(text[i]), ids);
    run = ++i;
  }
  impl_->encode_valid(view.substr(run), run == 0, ids);
  return ids;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const { return decode(ids, false); }

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& t = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    XFT_CHECK(id >= 0 && id < vocab_size() && t.known[id], t.file, ": cannot decode id ", id, " at position ", i,
              ": expected the id of a token, in [0, ", vocab_size(), ")");
    if (!(skip_special_tokens && t.special[id])) tokens.push_back(t.tokens[id]);
  }
  return decode_tokens(t.pipe, std::move(tokens));
}

int64_t BpeTokenizer::bos_id() const { return impl_->bos; }
int64_t BpeTokenizer::eos_id() const { return impl_->eos; }
int64_t BpeTokenizer::pad_id() const { return impl_->pad >= 0 ? impl_->pad : impl_->eos >= 0 ? impl_->eos : 0; }
int64_t BpeTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->tokens.size()); }
int64_t BpeTokenizer::token_to_id(const std::string& token) const { return impl_->token_to_id(token); }

}  // namespace xft
