#!/usr/bin/env python3
"""Build tests/fixtures/tokenizer/corpus.bin: >= 1 MB of varied text with Hugging Face tokenizers' ids.

Reference: `tokenizers` (pip) encoding third_party/qwen2/tokenizer.json (run tools/fetch_qwen2_tokenizer.sh
first) with add_special_tokens=False. Each document is encoded on its own.

The text: hand-written sentences in many languages and scripts; synthetic words drawn from the letters
of each script's block; Latin with accents in NFC and NFD form; stacked combining marks in scrambled
order; conjoining Hangul jamo; code (Python standard library, C headers); emoji with ZWJ sequences,
skin tones, flags and keycaps; long whitespace runs and tab/CR/LF mixes; digits, long numbers and
non-ASCII numerals; added tokens inline and half-written; contractions in odd cases; and random
assigned code points (valid UTF-8 junk). Code points unassigned in Python's Unicode (14.0) are avoided,
since the reference's regex and normalisation tables may be of another Unicode version.

Format (little-endian): b"VTTOKFX1", u32 n_docs, then per document: u32 n_bytes, u32 n_ids,
u8 roundtrip (0: decode(ids) == text, 1: decode(ids) == NFC(text)), the UTF-8 text, and the ids as
LEB128 varints. The C++ test reports the first differing document and token.
"""
import glob
import os
import random
import struct
import sys
import unicodedata

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "third_party/qwen2/tokenizer.json")
# Optional: gen_tokenizer_fixtures.py [SEED [OUT]], for extra differential runs beyond the committed corpus.
SEED = int(sys.argv[1]) if len(sys.argv) > 1 else 20250514
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests/fixtures/tokenizer/corpus.bin")
rng = random.Random(SEED)

SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog. It's what we'd've done; they'll say I'm RIGHT, won't they? DON'T SHOUT.",
    "fr": "Où est la bibliothèque ? L'été dernier, nous sommes allés à Besançon, près de la forêt. Ça coûte 12,50 € — très cher !",
    "de": "Größenwahn ist keine Lösung. Die Straße führt über den Fluss; Äpfel, Öl und Übermut. „Zitat“ — ß ẞ.",
    "es": "¿Dónde está el niño? ¡Qué día más bonito! El pingüino comió jamón y ñoquis en Añorbe.",
    "pt": "A promoção de São João não é pão com açúcar; coração, nações, irmã.",
    "pl": "Zażółć gęślą jaźń. Łódź leży w środkowej Polsce; źdźbło trawy.",
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "tr": "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul'da ılık bir gün.",
    "vi": "Tiếng Việt có nhiều dấu: người, được, những, không, trường học, Hà Nội, Thành phố Hồ Chí Minh.",
    "ru": "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России; ёлка.",
    "uk": "Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів! Київ, Львів, Її.",
    "el": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η Αθήνα είναι η πρωτεύουσα της Ελλάδας· ΐ ΰ ά.",
    "ar": "نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق. العربية لغة جميلة، ١٢٣٤٥٦٧٨٩٠.",
    "fa": "زبان فارسی زیباست؛ ۱۲۳۴۵۶۷۸۹۰ تومان. می‌خواهم کتاب بخوانم.",
    "he": "דג סקרן שט בים מאוכזב ולפתע מצא חברה. עִבְרִית עם ניקוד: שָׁלוֹם עֲלֵיכֶם.",
    "hi": "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम। हिन्दी १२३४५।",
    "bn": "আমি বাংলায় গান গাই। কলকাতা, ঢাকা; ০১২৩৪৫৬৭৮৯।",
    "ta": "யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.",
    "th": "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน ภาษาไทย ๑๒๓๔๕",
    "zh": "我能吞下玻璃而不伤身体。中华人民共和国成立于1949年，北京是首都。繁體中文：臺灣、香港。",
    "ja": "いろはにほへと ちりぬるを わかよたれそ つねならむ。東京都渋谷区、カタカナ、ｶﾀｶﾅ（半角）。",
    "ko": "다람쥐 헌 쳇바퀴에 타고파. 대한민국의 수도는 서울입니다. 한국어 ㄱㄴㄷ ㅏㅑㅓ.",
    "ka": "ქართული ენა ძალიან ლამაზია. თბილისი საქართველოს დედაქალაქია.",
    "hy": "Հայերենը շատ գեղեցիկ լեզու է։ Երևան։",
    "am": "ሰላም ለዓለም። አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።",
    "my": "မြန်မာဘာသာစကား ရန်ကုန်မြို့",
    "km": "ភាសាខ្មែរ ភ្នំពេញ",
    "si": "සිංහල භාෂාව කොළඹ",
    "sw": "Habari ya asubuhi? Ninapenda kusoma vitabu vya Kiswahili.",
    "math": "∀x∈ℝ: x² ≥ 0; ∑ᵢ₌₁ⁿ i = n(n+1)/2; √2 ≈ 1.41421356; ∞ ≠ ℵ₀; α→β ⇒ γ ∧ ¬δ; ½ ¾ ⅓ ⅛; Ⅻ ⅻ.",
}

# (first, last) code point ranges of letters to build synthetic words from, per script.
SCRIPTS = {
    "latin": (0x41, 0x24F), "greek": (0x391, 0x3C9), "cyrillic": (0x410, 0x44F), "armenian": (0x531, 0x586),
    "hebrew": (0x5D0, 0x5EA), "arabic": (0x620, 0x64A), "devanagari": (0x900, 0x97F), "bengali": (0x980, 0x9FF),
    "thai": (0xE01, 0xE5B), "georgian": (0x10D0, 0x10FA), "hangul": (0xAC00, 0xD7A3), "cjk": (0x4E00, 0x9FFF),
    "hiragana": (0x3041, 0x3096), "katakana": (0x30A1, 0x30FA), "ethiopic": (0x1200, 0x135A),
    "tamil": (0xB80, 0xBFF), "fullwidth": (0xFF01, 0xFF5E), "math_alnum": (0x1D400, 0x1D7FF),
}

EMOJI = ["😀", "🎉", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "🇩🇪", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "❤️", "🧑🏿‍🚀", "🤦‍♀️",
         "🫠", "🐍", "🦀", "☕", "✅", "⚠️", "🔥🔥🔥", "👋🏻👋🏼👋🏽👋🏾👋🏿", "🙇‍♂️", "🧔‍♀️"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\n\n", " \n", "\t\n", "\u00a0", "\u3000", "\u2003", "\u2009", "\u0085",
          "\u2028", "\u202f", "\v", "\f", "\r"]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d",
                "'D", "'ſ", "'x", "''", "'", "’s", "'123"]


def assigned(c):
    return unicodedata.category(chr(c)) not in ("Cn", "Cs")


def letters(lo, hi):
    return [chr(c) for c in range(lo, hi + 1) if unicodedata.category(chr(c)).startswith(("L", "M"))]


SCRIPT_CHARS = {k: letters(*v) for k, v in SCRIPTS.items()}
ASSIGNED = [c for c in range(0x20, 0x30000) if assigned(c) and not 0xD800 <= c <= 0xDFFF]
MARKS = [chr(c) for c in range(0x300, 0x370)] + ["\u0323", "\u0328", "\u031b", "\u05b4", "\u0651", "\u093c", "\u0e48"]


def word(chars, lo=1, hi=9):
    return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))


def gen_natural():
    parts = []
    for _ in range(rng.randint(3, 12)):
        lang = rng.choice(list(SENTENCES))
        s = SENTENCES[lang]
        if rng.random() < 0.3:
            s = unicodedata.normalize("NFD", s)
        parts.append(s)
        parts.append(rng.choice([" ", "\n", "\n\n", "  ", "\r\n"]))
    return "".join(parts)


def gen_synthetic():
    out = []
    for _ in range(rng.randint(20, 120)):
        r = rng.random()
        if r < 0.55:
            out.append(word(SCRIPT_CHARS[rng.choice(list(SCRIPT_CHARS))]))
        elif r < 0.65:
            out.append(rng.choice(EMOJI))
        elif r < 0.75:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 30))))
        elif r < 0.82:
            out.append(rng.choice(CONTRACTIONS))
        elif r < 0.9:
            out.append(rng.choice(".,;:!?-()[]{}<>\"'/\\|@#$%^&*_=+~`…—–«»“”‘’"))
        else:
            out.append(word(SCRIPT_CHARS["latin"], 1, 3) + "".join(rng.sample(MARKS, rng.randint(1, 4))))
        out.append(rng.choice(SPACES) if rng.random() < 0.3 else " ")
    return "".join(out)


def gen_normalisation():
    """NFD Latin, scrambled mark orders, conjoining jamo, singletons and composition exclusions."""
    out = []
    for _ in range(rng.randint(20, 60)):
        r = rng.random()
        if r < 0.3:
            w = word(SCRIPT_CHARS["latin"], 2, 8)
            out.append(unicodedata.normalize(rng.choice(["NFD", "NFC", "NFKD"]), w))
        elif r < 0.5:
            out.append(rng.choice("aeiouAEIOUnNcCsSzZ") + "".join(rng.choices(MARKS, k=rng.randint(1, 5))))
        elif r < 0.65:
            L, V, T = chr(0x1100 + rng.randint(0, 18)), chr(0x1161 + rng.randint(0, 20)), chr(0x11A8 + rng.randint(0, 26))
            out.append(L + V + (T if rng.random() < 0.5 else "") + (chr(0xAC00 + rng.randint(0, 11171)) + T if rng.random() < 0.3 else ""))
        elif r < 0.8:
            out.append(rng.choice(["\u212b", "\u2126", "\u0958", "\u2adc", "\u0344", "\u0f73", "\u1e9b\u0323", "\u0340", "\u0374", "\u037e", "\u0387", "\uf900"]))
        else:
            out.append(unicodedata.normalize("NFD", chr(rng.choice([0x1EA0 + rng.randint(0, 89), 0x1F00 + rng.randint(0, 250)]))))
        out.append(rng.choice([" ", "", "-", "\n"]))
    return "".join(out)


def gen_whitespace():
    out = []
    for _ in range(rng.randint(10, 40)):
        r = rng.random()
        if r < 0.4:
            out.append(" " * rng.randint(1, 300))
        elif r < 0.7:
            out.append("".join(rng.choices(SPACES, k=rng.randint(1, 30))))
        else:
            out.append(word(SCRIPT_CHARS["latin"]) + rng.choice(["", "!", "?", ".", "\u00bf"]))
    return "".join(out)


def gen_junk():
    return "".join(chr(rng.choice(ASSIGNED)) for _ in range(rng.randint(50, 600)))


def gen_numbers():
    out = []
    for _ in range(rng.randint(10, 50)):
        r = rng.random()
        if r < 0.5:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 60))))
        elif r < 0.7:
            out.append(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 12)}f}")
        else:
            base = rng.choice([0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xFF10, 0x1D7CE, 0x2070, 0x2460, 0x2160])
            out.append("".join(chr(base + rng.randint(0, 9)) for _ in range(rng.randint(1, 12))))
        out.append(rng.choice([" ", ",", ".", "\n", "x", "e", "-", ""]))
    return "".join(out)


CODE_FILES = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:60] + sorted(glob.glob("/usr/include/*.h"))[:40]


def gen_code():
    path = rng.choice(CODE_FILES)
    text = open(path, encoding="utf-8", errors="replace").read()
    start = rng.randint(0, max(0, len(text) - 4000))
    return text[start:start + rng.randint(500, 4000)]


def gen_specials(added):
    out = []
    for _ in range(rng.randint(10, 40)):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(added))
        elif r < 0.45:
            t = rng.choice(added)
            out.append(t[: rng.randint(1, len(t) - 1)])  # half-written
        elif r < 0.55:
            out.append("<|vision_start|>" + "<|image_pad|>" * rng.randint(1, 30) + "<|vision_end|>")
        else:
            out.append(gen_natural()[:200])
    return "".join(out)


def varint(x):
    b = bytearray()
    while True:
        byte = x & 0x7F
        x >>= 7
        if x:
            b.append(byte | 0x80)
        else:
            b.append(byte)
            return bytes(b)


def main():
    if not os.path.exists(VOCAB):
        sys.exit(f"{VOCAB} is missing: run tools/fetch_qwen2_tokenizer.sh")
    tok = Tokenizer.from_file(VOCAB)
    added = [t.content for t in tok.get_added_tokens_decoder().values()]
    gens = [gen_natural, gen_synthetic, gen_normalisation, gen_whitespace, gen_junk, gen_numbers, gen_code,
            lambda: gen_specials(added)]
    docs, total = [], 0
    while total < 1_100_000:
        text = rng.choice(gens)()
        docs.append(text)
        total += len(text.encode("utf-8"))
    blob = bytearray(b"VTTOKFX1" + struct.pack("<I", len(docs)))
    n_tokens = 0
    for text in docs:
        ids = tok.encode(text, add_special_tokens=False).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded == text:
            flag = 0
        else:
            assert decoded == unicodedata.normalize("NFC", text), "round trip is neither the text nor its NFC"
            flag = 1
        raw = text.encode("utf-8")
        blob += struct.pack("<IIB", len(raw), len(ids), flag) + raw + b"".join(varint(i) for i in ids)
        n_tokens += len(ids)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    open(OUT, "wb").write(blob)
    print(f"{OUT}: {len(docs)} documents, {total} text bytes, {n_tokens} tokens, {len(blob)} bytes")


if __name__ == "__main__":
    main()
