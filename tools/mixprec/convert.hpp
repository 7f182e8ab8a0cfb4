// `convert`: a llama2.c checkpoint and its tokenizer -> a GGUF v3 file that llama.cpp loads as
// architecture "llama", laid out as llama.cpp's examples/convert-llama2c-to-ggml writes it:
//
//   KVs      general.architecture "llama", general.name, general.file_type 0 (all F32),
//            llama.context_length (seq_len), llama.embedding_length (dim), llama.feed_forward_length
//            (hidden_dim), llama.attention.head_count, llama.attention.head_count_kv, llama.block_count,
//            llama.rope.dimension_count (head size), llama.attention.layer_norm_rms_epsilon (1e-5),
//            tokenizer.ggml.model "llama", tokenizer.ggml.tokens / scores (f32) / token_type (i32),
//            tokenizer.ggml.unknown_token_id 0, bos_token_id 1, eos_token_id 2 (u32)
//   tensors  token_embd, output_norm, output, then per layer blk.N.attn_q, attn_k, attn_v, attn_output,
//            attn_norm, ffn_gate, ffn_down, ffn_up, ffn_norm (all ".weight", all F32); a matrix of
//            llama2.c shape (out x in) is GGUF dims {in, out}: ne0 is the row length, and its bytes are
//            the checkpoint's row-major floats unchanged. wq/wk are not permuted: llama2.c rotates
//            interleaved pairs, which is llama.cpp's normal RoPE for "llama".
//   vocab    token 0 "<unk>" (type UNKNOWN), 1 "<s>" and 2 "</s>" (CONTROL), empty pieces CONTROL,
//            "<0xHH>" pieces BYTE, the rest NORMAL; spaces written as U+2581 (SentencePiece's form).
//
// Where it departs from that example, on purpose: llama.context_length is the checkpoint's seq_len (the
// example writes its default 128); rope.dimension_count is the head size (the example caps it at 64,
// which llama.cpp's graph then rejects for larger heads); general.name is the checkpoint's file stem
// (the example writes "llama"); general.file_type is written; the separator and padding ids are left out
// (the example writes LLAMA_TOKEN_NULL as u32 4294967295, which llama.cpp reports as a bad special token
// and replaces by its default, "none", which is what an absent key means). output.weight is always
// written, a copy of token_embd.weight when llama2.c shares the classifier (llama.cpp would also take
// its absence, falling back to token_embd, but then a quantizer could not give it its own type).
//
// The older llama2.c tokenizer schema (stories15M's) stores the 256 byte tokens at ids 3..258 as the
// character U+0000..U+00FF in UTF-8 (byte b < 0x80 as itself, b >= 0x80 as two bytes) rather than as
// "<0xHH>"; when all 256 are exactly that (or the raw byte) they are rewritten to "<0xHH>", as the current
// schema and llama.cpp's SentencePiece vocabulary have them (left as they are, "!" would be both a byte
// token and a word, a duplicate llama.cpp cannot load).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <mixprec/error.hpp>
#include <mixprec/io/gguf.hpp>
#include <mixprec/io/llama2c.hpp>
#include <mixprec/io/output_file.hpp>

namespace mixprec_cli {

// llama.cpp's llama_token_type (include/llama.h).
enum class llama_token_type : std::int32_t { undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct convert_summary {
  std::size_t tensors = 0;       // tensors written
  std::uint64_t bytes = 0;       // bytes of tensor data (every tensor F32)
  std::uint64_t file_bytes = 0;  // size of the GGUF written
  mixprec::llama2c::config config;  // the checkpoint's header
  std::size_t byte_tokens = 0;      // vocabulary entries of type BYTE
  bool legacy_tokenizer = false;    // the older schema (raw byte tokens), rewritten to "<0xHH>"
};

namespace convert_detail {

inline bool hex_digit(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }

// "<0xHH>" exactly.
inline bool is_byte_piece(const std::string& s) noexcept {
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex_digit(s[3]) && hex_digit(s[4]) && s[5] == '>';
}

// The older schema's form of byte token b: the character U+00bb in UTF-8.
inline std::string latin1_piece(unsigned b) {
  if (b < 0x80) return std::string(1, static_cast<char>(b));
  return {static_cast<char>(0xC0 | (b >> 6)), static_cast<char>(0x80 | (b & 0x3F))};
}

inline std::string byte_piece(unsigned b) {
  static constexpr char hex[] = "0123456789ABCDEF";
  return std::string("<0x") + hex[(b >> 4) & 15] + hex[b & 15] + ">";
}

// SentencePiece's text form: every space as U+2581 ("\xe2\x96\x81").
inline std::string escape_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == ' ')
      out += "\xe2\x96\x81";
    else
      out += c;
  }
  return out;
}

// The number of entries in a llama2.c tokenizer file (int32 max_token_length, then per token f32 score,
// int32 length, bytes); throws errc::parse_error when the file does not end on an entry.
inline std::size_t count_tokens(const std::vector<std::uint8_t>& bytes, const std::string& path) {
  auto fail = [&](const std::string& what) { throw mixprec::error(mixprec::errc::parse_error, "tokenizer '" + path + "': " + what); };
  if (bytes.size() < 4) fail("file of " + std::to_string(bytes.size()) + " bytes is shorter than its 4-byte header");
  std::size_t off = 4, n = 0;
  while (off < bytes.size()) {
    if (bytes.size() - off < 8) fail("truncated in the header of token " + std::to_string(n) + " (at byte " + std::to_string(off) + ")");
    std::int32_t len;
    std::memcpy(&len, bytes.data() + off + 4, 4);
    off += 8;
    if (len < 0 || static_cast<std::size_t>(len) > bytes.size() - off)
      fail("token " + std::to_string(n) + " has length " + std::to_string(len) + ", past the end of the file");
    off += static_cast<std::size_t>(len);
    ++n;
  }
  return n;
}

}  // namespace convert_detail

// Writes out_path: the llama2.c checkpoint at `checkpoint` with the tokenizer at `tokenizer` as a GGUF v3
// file of architecture "llama" (above), every tensor F32. Throws mixprec::error: errc::invalid_argument
// for an out_path that is one of the inputs, errc::io_error for unreadable inputs or an unwritable output,
// errc::parse_error for a malformed checkpoint or tokenizer (including a truncated one), errc::non_finite
// for NaN/Inf weights, errc::shape_mismatch for a tokenizer whose token count is not the checkpoint's
// vocab_size, errc::unsupported for a vocabulary llama.cpp cannot load (two tokens with the same text).
// Never leaves a partial output: the file is written beside out_path and renamed over it when complete.
inline convert_summary convert_llama2c(const std::string& checkpoint, const std::string& tokenizer, const std::string& out_path) {
  using mixprec::errc;
  using mixprec::error;
  namespace gguf = mixprec::gguf;
  mixprec::check_output_path(out_path, std::array{checkpoint, tokenizer});  // before any work

  const mixprec::llama2c::checkpoint ck = mixprec::llama2c::load_checkpoint(checkpoint);
  const mixprec::llama2c::config& c = ck.cfg;
  const auto tok_bytes = mixprec::llama2c::read_file(tokenizer);
  const std::size_t n_tokens = convert_detail::count_tokens(tok_bytes, tokenizer);
  if (n_tokens != static_cast<std::size_t>(c.vocab_size))
    throw error(errc::shape_mismatch, "tokenizer '" + tokenizer + "' has " + std::to_string(n_tokens) + " tokens, but checkpoint '" +
                                          checkpoint + "' has vocab_size " + std::to_string(c.vocab_size));
  const mixprec::llama2c::tokenizer tok = mixprec::llama2c::parse_tokenizer(tok_bytes.data(), tok_bytes.size(), c.vocab_size, tokenizer);

  convert_summary s;
  s.config = c;

  // ---- vocabulary ----
  std::vector<std::string> pieces = tok.vocab;
  if (pieces.size() >= 259) {  // the older schema: ids 3..258 are the bytes 0..255 as characters
    bool legacy = true;
    for (unsigned b = 0; b < 256 && legacy; ++b)
      legacy = pieces[3 + b] == convert_detail::latin1_piece(b) || pieces[3 + b] == std::string(1, static_cast<char>(b));
    if (legacy) {
      for (unsigned b = 0; b < 256; ++b) pieces[3 + b] = convert_detail::byte_piece(b);
      s.legacy_tokenizer = true;
    }
  }
  gguf::array tokens{gguf::value_type::string, {}}, scores{gguf::value_type::f32, {}}, types{gguf::value_type::i32, {}};
  std::set<std::string> seen;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    std::string text = pieces[i];
    llama_token_type type = llama_token_type::normal;
    if (i == 0) {
      text = "<unk>", type = llama_token_type::unknown;
    } else if (i == 1) {
      text = "<s>", type = llama_token_type::control;
    } else if (i == 2) {
      text = "</s>", type = llama_token_type::control;
    } else if (text.empty()) {
      type = llama_token_type::control;
    } else if (convert_detail::is_byte_piece(text)) {
      type = llama_token_type::byte;
      ++s.byte_tokens;
    }
    text = convert_detail::escape_spaces(text);
    // llama.cpp maps text -> id and aborts when two ids share a text (empty ones it renames apart).
    if (!text.empty() && !seen.insert(text).second)
      throw error(errc::unsupported, "tokenizer '" + tokenizer + "': token " + std::to_string(i) + " repeats the text of an earlier token ('" +
                                         text + "'); llama.cpp cannot load a vocabulary with duplicates");
    tokens.items.emplace_back(std::move(text));
    scores.items.emplace_back(tok.scores[i]);
    types.items.emplace_back(static_cast<std::int32_t>(type));
  }

  // ---- metadata ----
  gguf::metadata kvs;
  auto u32 = [](int v) { return gguf::value(static_cast<std::uint32_t>(v)); };
  kvs.set("general.architecture", gguf::value("llama"));
  kvs.set("general.name", gguf::value(std::filesystem::path(checkpoint).stem().string()));
  kvs.set("general.file_type", gguf::value(std::uint32_t{0}));  // LLAMA_FTYPE_ALL_F32
  kvs.set("llama.context_length", u32(c.seq_len));
  kvs.set("llama.embedding_length", u32(c.dim));
  kvs.set("llama.feed_forward_length", u32(c.hidden_dim));
  kvs.set("llama.attention.head_count", u32(c.n_heads));
  kvs.set("llama.attention.head_count_kv", u32(c.n_kv_heads));
  kvs.set("llama.block_count", u32(c.n_layers));
  kvs.set("llama.rope.dimension_count", u32(c.head_size()));
  kvs.set("llama.attention.layer_norm_rms_epsilon", gguf::value(1e-5f));
  kvs.set("tokenizer.ggml.model", gguf::value("llama"));
  kvs.set("tokenizer.ggml.tokens", gguf::value(std::move(tokens)));
  kvs.set("tokenizer.ggml.scores", gguf::value(std::move(scores)));
  kvs.set("tokenizer.ggml.token_type", gguf::value(std::move(types)));
  kvs.set("tokenizer.ggml.unknown_token_id", gguf::value(std::uint32_t{0}));
  kvs.set("tokenizer.ggml.bos_token_id", gguf::value(std::uint32_t{1}));
  kvs.set("tokenizer.ggml.eos_token_id", gguf::value(std::uint32_t{2}));

  // ---- tensors: (out x in) row-major -> dims {in, out}, bytes unchanged ----
  std::vector<gguf::tensor_source> ts;
  auto add = [&](std::string name, std::span<const float> data, std::vector<std::uint64_t> dims) {
    gguf::tensor_source t;
    t.name = std::move(name);
    t.type = 0;  // F32
    t.dims = std::move(dims);
    t.bytes = std::as_bytes(data);
    ts.push_back(std::move(t));
  };
  auto matrix = [&](std::string name, const mixprec::row_matrix& m) {
    add(std::move(name), std::span<const float>(m.data(), static_cast<std::size_t>(m.size())),
        {static_cast<std::uint64_t>(m.cols()), static_cast<std::uint64_t>(m.rows())});
  };
  auto vector = [&](std::string name, const Eigen::VectorXf& v) {
    add(std::move(name), std::span<const float>(v.data(), static_cast<std::size_t>(v.size())), {static_cast<std::uint64_t>(v.size())});
  };
  matrix("token_embd.weight", ck.token_embedding);
  vector("output_norm.weight", ck.rms_final);
  matrix("output.weight", ck.classifier);  // a copy of the embedding when shared (llama2c.hpp)
  for (std::size_t i = 0; i < ck.layers.size(); ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    const auto& l = ck.layers[i];
    matrix(p + "attn_q.weight", l.wq);
    matrix(p + "attn_k.weight", l.wk);
    matrix(p + "attn_v.weight", l.wv);
    matrix(p + "attn_output.weight", l.wo);
    vector(p + "attn_norm.weight", l.rms_att);
    matrix(p + "ffn_gate.weight", l.w1);
    matrix(p + "ffn_down.weight", l.w2);
    matrix(p + "ffn_up.weight", l.w3);
    vector(p + "ffn_norm.weight", l.rms_ffn);
  }

  // Written beside out_path and renamed over it only when complete; an input is never the output.
  mixprec::output_file out(out_path, {checkpoint, tokenizer});
  gguf::write(out.stream(), kvs, ts);
  out.commit();

  s.tensors = ts.size();
  for (const auto& t : ts) s.bytes += t.bytes.size();
  s.file_bytes = std::filesystem::file_size(out_path);
  return s;
}

}  // namespace mixprec_cli
