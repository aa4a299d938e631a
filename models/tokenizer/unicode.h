// unicode.h: UTF-8 decoding with byte-offset errors, and NFC normalisation (UAX #15).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/unicode_tables.h"

namespace vt::unicode {

// Decodes strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). Invalid input throws
// vt::Error naming `what` and the byte offset of the first bad sequence.
std::u32string decode_utf8(std::string_view s, const char* what = "text");

// Throws like decode_utf8 when `s` is not valid UTF-8; allocates nothing.
void validate_utf8(std::string_view s, const char* what = "text");

void append_utf8(std::string& out, char32_t c);
std::string encode_utf8(std::u32string_view s);

// Canonical composition (NFC). Text whose code points all pass the quick check is returned as is.
std::u32string nfc(std::u32string_view s);
bool is_nfc_quick(std::u32string_view s);  // true: certainly NFC already

}  // namespace vt::unicode
