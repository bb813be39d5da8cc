"""Trains small byte-level BPE tokenizers with Hugging Face `tokenizers` and records their ids.

usage: make_bpe_fixtures.py OUT_DIR

Each configuration is a directory OUT_DIR/<name>/ holding tokenizer.json (as `tokenizers` saves
it; some also a tokenizer_config.json) and expected.json:
  encode:  [{"text", "ids", "decoded", "nfc"}]  ids = tok.encode(text, add_special_tokens=False).ids,
           decoded = tok.decode(ids, skip_special_tokens=False), nfc = whether text is in NFC
  decode:  [{"ids", "text", "skipped"}]         tok.decode(ids) keeping / skipping special tokens
  special: {"bos_id", "eos_id", "pad_id", "vocab_size"}  what xft must report (-1: none)
The C++ test (tests/test_bpe_tokenizer.cpp) must reproduce every id. The training text is Python
standard library source read from this interpreter (plus a few lines of other scripts), in sorted
file order, so the fixtures are deterministic for a given Python and tokenizers version.
"""
import glob
import json
import os
import sys
import sysconfig
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

TRAIN_BYTES = 300_000
HELD_OUT_FILE = "textwrap.py"  # never part of the training text (see training_text)

MULTILINGUAL = """\
你好，世界。这是一个用于测试的中文句子，包含标点符号。机器学习模型需要大量的数据。
日本語のテキストも少し含めます。こんにちは、世界！東京は日本の首都です。
한국어 문장도 있습니다. 안녕하세요, 세계! 서울은 한국의 수도입니다.
Привет, мир! Это тестовое предложение на русском языке.
Καλημέρα κόσμε, αυτή είναι μια δοκιμή. naïve café résumé Åström Ærø straße
مرحبا بالعالم. नमस्ते दुनिया। שלום עולם
"""

# DeepSeek-Coder's pre-tokenizer regexes as in its tokenizer.json. The letter class holds canonical
# singletons (U+1F7D, U+1FBE, U+2126, U+212A ...) that NFC would fold into other letters, making
# empty ranges: they are written as escapes.
DEEPSEEK_LETTERS = (
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+")
DEEPSEEK_PUNCT = r"\s?[!-/:-~！-／：-～‘-‟　-。]+"
DEEPSEEK_CJK = r"[一-龥ࠀ-一가-퟿]+"
DS_BOS, DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

# Qwen2's pre-tokenizer regex (case-insensitive group, lookahead, \p classes).
QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "",
    " ",
    "\n",
    "\n\n\n",
    "   \n  \n",
    "\t",
    "hello world",
    "Hello World!",
    "def add(a, b):\n    return a + b\n",
    "class Foo(object):\n    \"\"\"Doc.\"\"\"\n\n    def __init__(self, x=1):\n        self.x = x  # trailing   \n",
    "if x:\r\n\treturn 1\r\nelse:\r\n\treturn 2\r\n",
    "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;\n\treturn 0;\n}\n",
    "x = 1234567890123456789 + 3.14159e-10 - 0xDEADBEEF + 1_000_000",
    "a" + " " * 40 + "b" + "\t" * 7 + "c   ",
    "trailing spaces   \nand tabs\t\t\n",
    "don't I'll we've it's they're I'm he'd DON'T WE'LL",
    "你好，世界！这是测试。",
    "こんにちは、世界。カタカナとひらがな",
    "안녕하세요 세계",
    "Привет, мир! Ёжик",
    "naïve café résumé Åström Ærø — “quotes” ‘single’ …",
    "e\u0301 a\u0308 n\u0303 (decomposed, not NFC)",
    "emoji 😀👍🏽 🚀🔥 family 👨‍👩‍👧‍👦 flag 🇯🇵",
    "mixed 中文English日本語한국어123中文",
    "Ελληνικά και English, русский и 中文",
    "numbers ٣٤٥ １２３ ²³ ½ Ⅻ",
    "full\u3000width\u3000space，标点！？",
    "nbsp\u00a0here and nel\u0085there and zwsp\u200bend",
    "<|begin_of_sentence|>hello<|end_of_sentence|>",
    "text <|end_of_sentence|> more <|fim_hole|> end",
    DS_BOS + "print('hi')" + DS_EOS,
    "<|EOT|> inside <｜fim▁hole｜>",
    "return returned returns(x)",
    "TODO: fix TODOs and myTODO and TODO_ and TODO.",
    "before  <mask>  after<mask>x [SEP]  y",
    "<|endoftext|><|end of <|end",
    "a,b;c::d  e,,f;; ::g camelCaseName deadbeef 0xcafe HTTPServer",
    "    \n\n    indented\n\t\tmixed \t tabs",
    "Zyxwvutsrq qqqqqq xyzzy plugh frobnicate",
    "ŝ ĉ ĝ ĥ ĵ ŭ — Esperanto; ÿ õ ÷ ý",
    "unicode_identifiers = λx: x²  # π ≈ 3.14159",
    "line\u2028sep\u2029para",
    "x\u0085\u0085!y \u0085\u0085 z \u0085define!\u0085\u0085!",  # U+0085 is \s to Oniguruma
    "a\u3000<mask>\u00a0b <mask>\u2028c",  # lstrip/rstrip take Unicode whitespace
    "éTODO TODOé TODO² TODO٣ _TODO ‿TODO",  # single_word next to letters, digits, connectors
]


def stdlib_files():
    root = sysconfig.get_paths()["stdlib"]
    return sorted(glob.glob(os.path.join(root, "*.py")))


def training_text():
    chunks, total = [], 0
    for path in stdlib_files():
        if os.path.basename(path) == HELD_OUT_FILE:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        chunks.append(text)
        total += len(text.encode("utf-8"))
        if total >= TRAIN_BYTES:
            break
    # U+0085 inside pre-tokens, often enough to be merged: Oniguruma's \s matches it, so the
    # fixtures tell whether xft's regex engine agrees with tokenizers' there.
    return chunks + [MULTILINGUAL] * 20 + ["x\u0085define y\u0085define!\u0085\u0085!\n"] * 100


def held_out_text():
    path = os.path.join(sysconfig.get_paths()["stdlib"], HELD_OUT_FILE)
    with open(path, encoding="utf-8") as f:
        return f.read()[:6000]


def train(pre_tokenizer, texts, vocab_size, model=None, special=(), alphabet=True):
    tok = Tokenizer(model or models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                         special_tokens=list(special),
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet else [])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.decoder = decoders.ByteLevel()
    return tok


def copy(tok):
    return Tokenizer.from_str(tok.to_str())


def deepseek_pre_tokenizer():
    split = lambda r: pre_tokenizers.Split(Regex(r), behavior="isolated")
    return pre_tokenizers.Sequence([
        split(r"[\r\n]"), split(DEEPSEEK_LETTERS), split(DEEPSEEK_PUNCT), split(r"\s+$"), split(DEEPSEEK_CJK),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def make_configs(corpus):
    texts = training_text()
    gpt2_base = train(pre_tokenizers.ByteLevel(add_prefix_space=False), texts, 3000)
    configs = {}

    # (1) GPT-2 style: regex ByteLevel, two special tokens, non-special added tokens (one of them an
    # ordinary word, so it is cut out of longer words too). No BOS/EOS anywhere: xft reports -1.
    t = copy(gpt2_base)
    t.add_special_tokens(["<|begin_of_sentence|>", "<|end_of_sentence|>"])
    t.add_tokens([AddedToken("<|fim_hole|>", special=False), AddedToken("return", special=False)])
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    configs["gpt2"] = (t, None, {"bos_id": -1, "eos_id": -1, "pad_id": 0})

    # (2) DeepSeek-Coder: its Split sequence + Digits + ByteLevel without regex, an empty normalizer
    # Sequence, BOS from the template, EOS/PAD from tokenizer_config.json, DeepSeek's "õ"-style
    # added token (a byte-level character matched in the raw text).
    t = train(deepseek_pre_tokenizer(), texts, 3000)
    t.normalizer = normalizers.Sequence([])
    t.add_tokens([AddedToken("õ", special=False, normalized=True)])
    t.add_special_tokens([DS_BOS, DS_EOS, "<｜fim▁hole｜>", "<|EOT|>"])
    bos = t.token_to_id(DS_BOS)
    t.post_processor = processors.TemplateProcessing(single=f"{DS_BOS} $A", pair=f"{DS_BOS} $A $B",
                                                     special_tokens=[(DS_BOS, bos)])
    config = {"bos_token": {"content": DS_BOS, "lstrip": False}, "eos_token": {"content": DS_EOS},
              "pad_token": {"content": DS_EOS}, "add_bos_token": True}
    configs["deepseek"] = (t, config, {"bos_id": bos, "eos_id": t.token_to_id(DS_EOS),
                                       "pad_id": t.token_to_id(DS_EOS)})

    # (3) ignore_merges (tokenizers >= 0.19): a pre-token that is in the vocab maps directly. A trained
    # vocab is always rebuilt by its merges, so (as in Llama 3) the vocab also gets words no merge
    # sequence reaches; the corpus holds them.
    j = json.loads(gpt2_base.to_str())
    j["model"]["ignore_merges"] = True
    vocab = j["model"]["vocab"]
    for word in ("Ġfrobnicate", "Ġplugh", "xyzzy", "ĠZyxwvutsrq"):
        vocab.setdefault(word, len(vocab))
    t = Tokenizer.from_str(json.dumps(j))
    t.add_special_tokens(["<|endoftext|>"])
    eot = t.token_to_id("<|endoftext|>")
    t.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", eot)])
    configs["ignore_merges"] = (t, None, {"bos_id": -1, "eos_id": eot, "pad_id": eot})
    plain = copy(t)
    plain.model.ignore_merges = False
    assert any(t.encode(s).ids != plain.encode(s).ids for s in corpus), "ignore_merges changed no encoding"

    # (4) Qwen2 style: NFC normalizer, one Split regex, ByteLevel without regex; tokenizer_config
    # names bos as null and eos/pad as plain strings.
    t = copy(gpt2_base)
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    configs["qwen"] = (t, config, {"bos_id": -1, "eos_id": t.token_to_id("<|im_end|>"),
                                   "pad_id": t.token_to_id("<|endoftext|>")})

    # (5) Added-token options: single_word, lstrip/rstrip, normalized=False, overlapping contents
    # (longest match wins); ByteLevel with add_prefix_space.
    t = copy(gpt2_base)
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    t.add_tokens([AddedToken("TODO", single_word=True, special=False),
                  AddedToken("[SEP]", normalized=False, rstrip=True, special=False),
                  AddedToken("<|end", special=False)])
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, special=True), "<|endoftext|>"])
    configs["added"] = (t, None, {"bos_id": -1, "eos_id": -1, "pad_id": 0})

    # (6) Every Split behaviour, invert, contiguous Digits.
    t = copy(gpt2_base)
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[,;]"), behavior="merged_with_previous"),
        pre_tokenizers.Split("::", behavior="removed"),
        pre_tokenizers.Split(Regex(r"^ "), behavior="removed"),  # Oniguruma's ^ is at every line start
        pre_tokenizers.Split(Regex(r"[^\t]+"), behavior="removed", invert=True),
        pre_tokenizers.Split(Regex(r"(?<=[a-z])(?=[A-Z])"), behavior="isolated"),  # empty matches: camelCase
        pre_tokenizers.Split(Regex(r"[0-9a-f]"), behavior="contiguous"),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    configs["splits"] = (t, None, {"bos_id": -1, "eos_id": -1, "pad_id": 0})

    # (7) Unknown characters: an ASCII-only alphabet with a fused <unk>; other bytes become <unk>.
    ascii_texts = ["".join(c for c in s if ord(c) < 128) for s in texts]
    t = train(pre_tokenizers.ByteLevel(add_prefix_space=False), ascii_texts, 400,
              model=models.BPE(unk_token="<unk>", fuse_unk=True), special=["<unk>"], alphabet=False)
    configs["unk"] = (t, None, {"bos_id": -1, "eos_id": -1, "pad_id": 0})
    return configs


def write_config(out, name, tok, config, special, corpus):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
    # Reload what was saved: the fixture is the file, not the in-memory object.
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    encode = []
    for text in corpus:
        ids = tok.encode(text, add_special_tokens=False).ids
        encode.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                       "nfc": unicodedata.is_normalized("NFC", text)})
    # Decode cases: the concatenation of several encodings with special tokens between them, and
    # slices that end on a token boundary (valid UTF-8 only: xft returns raw bytes where
    # tokenizers would put U+FFFD).
    specials = [tok.token_to_id(s) for s in ("<|begin_of_sentence|>", DS_BOS, "<|endoftext|>", "<mask>")]
    specials = [s for s in specials if s is not None]
    decode = []
    for i in range(0, len(encode) - 2, 3):
        ids = specials[:1] + encode[i]["ids"] + specials[1:] + encode[i + 1]["ids"] + encode[i + 2]["ids"]
        decode.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False), "skipped": tok.decode(ids, skip_special_tokens=True)})
    vocab_size = max(tok.get_vocab(with_added_tokens=True).values()) + 1
    expected = {"encode": encode, "decode": [d for d in decode if "\ufffd" not in d["text"]],
                "special": {**special, "vocab_size": vocab_size}}
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_bpe_fixtures.py OUT_DIR")
    out = sys.argv[1]
    corpus = CORPUS + [held_out_text()]
    configs = make_configs(corpus)
    for name, cfg in configs.items():
        write_config(out, name, *cfg, corpus)
    print(f"wrote {len(configs)} tokenizers fixtures to {out}")


if __name__ == "__main__":
    main()
