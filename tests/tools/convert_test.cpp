// `convert` (tools/mixprec/convert.hpp): llama2.c checkpoint + tokenizer -> GGUF as llama.cpp's
// convert-llama2c-to-ggml lays it out. On the seeded synthetic model of support/tiny_llama.hpp (the
// shapes of llama2.c's 260K example: GQA, rows of 172, a shared classifier, a BPE vocabulary of 512),
// written into each test's own folder: tensor names, order, shapes and types, the F32 bytes against the
// generated weights, the KVs, the vocabulary (texts, scores, types against the llama2.c tokenizer's) and
// text encoded with the GGUF's vocabulary decoding back through llama2.c's; on smaller generated
// checkpoints: a separate classifier, the older tokenizer schema; and the errors, none of which leaves
// a file.
// Whether llama.cpp itself loads the result and runs it: tests/interop/llama_generate_test.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include "tools/mixprec/convert.hpp"
#include "mixprec/models/tokenizer.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"
#include "support/files.hpp"
#include "support/tiny_llama.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
using mixprec_cli::convert_llama2c;
using mixprec_cli::llama_token_type;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_convert_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The synthetic model and its vocabulary as llama2.c files, in a folder of their own (so the folders
// whose files the tests count hold none of them).
// The shared classifier (as llama2.c's 260K model has it) is the layout under test: no wcls, no output.weight.
const mixprec::test::tiny_llama_options tiny_options{.shared_classifier = true};
mixprec::test::tiny_llama_files tiny_llama_files(const std::string& name) {
  return mixprec::test::write_tiny_llama(fresh_dir(name), tiny_options);
}

// The size of the synthetic model's file: the 7-int32 header, the weights (shared classifier: no wcls),
// and llama2.c's RoPE tables (seq_len x head_size / 2, twice).
std::size_t tiny_llama_file_bytes() {
  const mixprec::test::tiny_llama_options& o = tiny_options;
  const std::size_t kv = static_cast<std::size_t>(o.dim / o.n_heads * o.n_kv_heads), d = static_cast<std::size_t>(o.dim),
                    h = static_cast<std::size_t>(o.hidden_dim), L = static_cast<std::size_t>(o.n_layers);
  const std::size_t floats = static_cast<std::size_t>(o.vocab_size) * d + L * (2 * d + 2 * d * d + 2 * kv * d + 3 * h * d) + d +
                             static_cast<std::size_t>(o.seq_len) * (d / static_cast<std::size_t>(o.n_heads));
  return 28 + 4 * floats;
}

// SentencePiece's text of a llama2.c piece, written out here rather than taken from the converter:
// every ' ' as U+2581.
std::string with_u2581(const std::string& piece) {
  std::string out;
  for (char c : piece) out += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
  return out;
}

using mixprec::test::read_bytes;

void write_all(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::size_t file_count(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

using mixprec::test::error_code_of;

// The bytes of a row-major float matrix or vector.
template <class M>
bool same_floats(const gguf::tensor_info& t, const M& m) {
  return t.size == static_cast<std::uint64_t>(m.size()) * 4 && std::memcmp(t.bytes.data(), m.data(), t.size) == 0;
}

// A llama2.c tokenizer file of the given pieces (scores -i).
void write_tokenizer(const fs::path& p, const std::vector<std::string>& pieces) {
  std::ofstream out(p, std::ios::binary);
  std::int32_t max_len = 1;
  for (const auto& s : pieces) max_len = std::max(max_len, static_cast<std::int32_t>(s.size()));
  out.write(reinterpret_cast<const char*>(&max_len), 4);
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const float score = -static_cast<float>(i);
    const auto len = static_cast<std::int32_t>(pieces[i].size());
    out.write(reinterpret_cast<const char*>(&score), 4);
    out.write(reinterpret_cast<const char*>(&len), 4);
    out.write(pieces[i].data(), len);
  }
}

// A small random checkpoint: dim 16, hidden 24, 2 layers, vocab `vocab`.
mixprec::llama2c::checkpoint tiny_model(int vocab, int n_heads, int n_kv_heads, bool shared) {
  mixprec::llama2c::checkpoint ck;
  ck.cfg = {16, 24, 2, n_heads, n_kv_heads, vocab, 8, shared};
  std::uint32_t seed = 7;
  auto g = [&](int r, int c) { return mixprec::test::gaussian(r, c, 0.3f, seed++); };
  ck.token_embedding = g(vocab, 16);
  for (int l = 0; l < 2; ++l) {
    mixprec::llama2c::layer_weights w;
    w.rms_att = Eigen::VectorXf::Ones(16) + g(16, 1).col(0);
    w.rms_ffn = Eigen::VectorXf::Ones(16) + g(16, 1).col(0);
    const int kv = ck.cfg.kv_dim();
    w.wq = g(16, 16), w.wk = g(kv, 16), w.wv = g(kv, 16), w.wo = g(16, 16);
    w.w1 = g(24, 16), w.w2 = g(16, 24), w.w3 = g(24, 16);
    ck.layers.push_back(w);
  }
  ck.rms_final = Eigen::VectorXf::Ones(16) + g(16, 1).col(0);
  ck.classifier = shared ? ck.token_embedding : g(vocab, 16);
  return ck;
}

// Pieces of the current schema: <unk>, <s>, </s>, the 256 "<0xHH>" bytes, then `extra` words.
std::vector<std::string> current_pieces(int extra) {
  std::vector<std::string> p = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (unsigned b = 0; b < 256; ++b) p.push_back(mixprec_cli::convert_detail::byte_piece(b));
  for (int i = 0; i < extra; ++i) p.push_back(" w" + std::to_string(i));
  return p;
}

}  // namespace

TEST_CASE("convert: the synthetic llama2.c model -> GGUF with llama.cpp's names, shapes and bytes", "[convert]") {
  const auto in = tiny_llama_files("real_in");
  const fs::path dir = fresh_dir("real");
  const std::string out = (dir / "tiny_llama.gguf").string();
  const auto s = convert_llama2c(in.model, in.tokenizer, out);
  const auto ck = mixprec::test::tiny_llama(tiny_options);  // the weights as generated, not as read back from the file
  const auto g = gguf::file::open(out);

  const auto& o = tiny_options;  // the shapes the checkpoint was made with
  REQUIRE(s.tensors == static_cast<std::size_t>(3 + 9 * o.n_layers));
  CHECK(s.config.dim == o.dim);
  CHECK(s.config.hidden_dim == o.hidden_dim);
  CHECK(s.config.n_layers == o.n_layers);
  CHECK(s.config.n_heads == o.n_heads);
  CHECK(s.config.n_kv_heads == o.n_kv_heads);
  CHECK(s.config.vocab_size == o.vocab_size);
  CHECK(s.config.seq_len == o.seq_len);
  CHECK(s.config.shared_classifier);
  CHECK(s.byte_tokens == 256);
  CHECK_FALSE(s.legacy_tokenizer);
  CHECK(s.file_bytes == fs::file_size(out));
  CHECK(g.version() == 3);
  CHECK(g.alignment() == 32);
  CHECK(file_count(dir) == 1);  // no temporary left beside it

  // Names and order as convert-llama2c-to-ggml adds them; dims ne0 first (the row length); attn_k and
  // attn_v have kv_dim = 64 * 4 / 8 = 32 rows (grouped-query attention).
  std::vector<std::string> names = {"token_embd.weight", "output_norm.weight", "output.weight"};
  std::vector<std::vector<std::uint64_t>> dims = {{64, 512}, {64}, {64, 512}};
  for (int l = 0; l < 4; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_gate", "ffn_down", "ffn_up", "ffn_norm"})
      names.push_back(p + n + ".weight");
    for (std::vector<std::uint64_t> d : {std::vector<std::uint64_t>{64, 64}, {64, 32}, {64, 32}, {64, 64}, {64}, {64, 172}, {172, 64}, {64, 172}, {64}})
      dims.push_back(d);
  }
  REQUIRE(g.tensors().size() == names.size());
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& t = g.tensors()[i];
    INFO(t.name);
    CHECK(t.name == names[i]);
    CHECK(t.dims == dims[i]);
    CHECK(t.type == 0);
    CHECK(t.offset % 32 == 0);
    bytes += t.size;
  }
  CHECK(bytes == s.bytes);
  CHECK(bytes == (512 * 64 * 2 + 64 + 4 * (2 * 64 * 64 + 2 * 32 * 64 + 2 * 64 + 3 * 64 * 172)) * 4);

  // The F32 bytes are the generated floats, unchanged; output.weight is a copy of the shared embedding.
  CHECK(same_floats(g.at("token_embd.weight"), ck.token_embedding));
  CHECK(same_floats(g.at("output.weight"), ck.token_embedding));
  CHECK(same_floats(g.at("output_norm.weight"), ck.rms_final));
  for (int l = 0; l < 4; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const auto& w = ck.layers[static_cast<std::size_t>(l)];
    INFO("layer " << l);
    CHECK(same_floats(g.at(p + "attn_q.weight"), w.wq));
    CHECK(same_floats(g.at(p + "attn_k.weight"), w.wk));
    CHECK(same_floats(g.at(p + "attn_v.weight"), w.wv));
    CHECK(same_floats(g.at(p + "attn_output.weight"), w.wo));
    CHECK(same_floats(g.at(p + "attn_norm.weight"), w.rms_att));
    CHECK(same_floats(g.at(p + "ffn_gate.weight"), w.w1));
    CHECK(same_floats(g.at(p + "ffn_down.weight"), w.w2));
    CHECK(same_floats(g.at(p + "ffn_up.weight"), w.w3));
    CHECK(same_floats(g.at(p + "ffn_norm.weight"), w.rms_ffn));
  }
  // to_float gives (out x in) back: the matrix llama2.c multiplies by.
  CHECK(g.to_float("blk.2.ffn_down.weight") == ck.layers[2].w2);
  CHECK(g.to_float("blk.3.attn_k.weight") == ck.layers[3].wk);

  // KVs: the checkpoint's header (seq_len as the context, the head size as the RoPE dimension).
  const auto& kv = g.kvs();
  CHECK(kv.get_string("general.architecture") == "llama");
  CHECK(kv.get_string("general.name") == "tiny_llama");  // the stem of tiny_llama.bin
  CHECK(kv.get_u32("general.file_type") == 0);
  CHECK(kv.get_u32("llama.context_length") == static_cast<std::uint32_t>(o.seq_len));
  CHECK(kv.get_u32("llama.embedding_length") == static_cast<std::uint32_t>(o.dim));
  CHECK(kv.get_u32("llama.feed_forward_length") == static_cast<std::uint32_t>(o.hidden_dim));
  CHECK(kv.get_u32("llama.block_count") == static_cast<std::uint32_t>(o.n_layers));
  CHECK(kv.get_u32("llama.attention.head_count") == static_cast<std::uint32_t>(o.n_heads));
  CHECK(kv.get_u32("llama.attention.head_count_kv") == static_cast<std::uint32_t>(o.n_kv_heads));
  CHECK(kv.get_u32("llama.rope.dimension_count") == static_cast<std::uint32_t>(o.dim / o.n_heads));
  CHECK(kv.get_f32("llama.attention.layer_norm_rms_epsilon") == 1e-5f);
  CHECK(kv.get_string("tokenizer.ggml.model") == "llama");
  CHECK(kv.get_u32("tokenizer.ggml.unknown_token_id") == 0);
  CHECK(kv.get_u32("tokenizer.ggml.bos_token_id") == 1);
  CHECK(kv.get_u32("tokenizer.ggml.eos_token_id") == 2);
  CHECK(kv.find("tokenizer.ggml.seperator_token_id") == nullptr);
  CHECK(kv.find("tokenizer.ggml.padding_token_id") == nullptr);
  CHECK(kv.find("general.alignment") == nullptr);

  // general.name is the file's stem whatever the name: only the last extension goes.
  fs::copy_file(in.model, dir / "stories-260K.v2.bin");
  convert_llama2c((dir / "stories-260K.v2.bin").string(), in.tokenizer, (dir / "renamed.gguf").string());
  CHECK(gguf::file::open((dir / "renamed.gguf").string()).kvs().get_string("general.name") == "stories-260K.v2");
  fs::remove_all(dir);
  fs::remove_all(fs::path(in.model).parent_path());
}

TEST_CASE("convert: the vocabulary is the llama2.c tokenizer's, and text encoded with it decodes through llama2.c's", "[convert]") {
  const auto in = tiny_llama_files("vocab_in");
  const fs::path dir = fresh_dir("vocab");
  const std::string out = (dir / "m.gguf").string();
  convert_llama2c(in.model, in.tokenizer, out);
  const auto g = gguf::file::open(out);
  const auto tok = mixprec::test::tiny_tokenizer(512);  // as generated, not as read back from the file

  const auto& tokens = g.kvs().get_array("tokenizer.ggml.tokens");
  const auto& scores = g.kvs().get_array("tokenizer.ggml.scores");
  const auto& types = g.kvs().get_array("tokenizer.ggml.token_type");
  REQUIRE(tokens.type == gguf::value_type::string);
  REQUIRE(scores.type == gguf::value_type::f32);
  REQUIRE(types.type == gguf::value_type::i32);
  REQUIRE(tok.vocab.size() == 512);
  REQUIRE(tokens.items.size() == 512);
  REQUIRE(scores.items.size() == 512);
  REQUIRE(types.items.size() == 512);

  auto text = [&](std::size_t i) { return *tokens.items[i].get_if<std::string>(); };
  auto type = [&](std::size_t i) { return static_cast<llama_token_type>(*types.items[i].get_if<std::int32_t>()); };
  CHECK(text(0) == "<unk>");
  CHECK(text(1) == "<s>");
  CHECK(text(2) == "</s>");
  CHECK(type(0) == llama_token_type::unknown);
  CHECK(type(1) == llama_token_type::control);
  CHECK(type(2) == llama_token_type::control);
  CHECK(text(3) == "<0x00>");
  CHECK(text(258) == "<0xFF>");
  std::size_t spaced = 0;  // pieces with a space: where the U+2581 rewrite shows
  for (std::size_t i = 0; i < 512; ++i) {
    INFO("token " << i << " '" << tok.vocab[i] << "'");
    CHECK(std::memcmp(scores.items[i].get_if<float>(), &tok.scores[i], 4) == 0);
    if (i >= 3) CHECK(text(i) == with_u2581(tok.vocab[i]));
    if (i >= 3 && i < 259)
      CHECK(type(i) == llama_token_type::byte);
    else if (i >= 259)
      CHECK(type(i) == llama_token_type::normal);
    spaced += tok.vocab[i].find(' ') != std::string::npos ? 1 : 0;
  }
  CHECK(spaced >= 100);  // most merges begin a word with its space

  // The vocabulary the library reads back from the GGUF (what `measure --text` tokenizes with) decodes
  // every token as llama2.c's run.c does: after BOS (its leading space dropped) and after another token.
  const auto spm = mixprec::models::spm_tokenizer::from_gguf(g);
  REQUIRE(spm.size() == 512);
  // (After BOS run.c drops the space a piece begins with, llama.cpp the space the text begins with: the
  // two differ for the byte token <0x20> alone, so that one is compared after another token only.)
  for (int id = 3; id < 512; ++id) {
    INFO("token " << id);
    CHECK(spm.piece(id) == tok.decode(300, id));
    if (id != 3 + 0x20) CHECK(spm.decode(std::vector<int>{id}, {.strip_space_prefix = true}) == tok.decode(1, id));
  }
  // Text encoded with it, merges and byte fallback (the newline, the digits and the two bytes of 'ë' are
  // no pieces), decodes back to the text through llama2.c's decode; the llama2.c vocabulary encodes it alike.
  const std::string sentence = "Once upon a time, Lily and Tom found a shiny stone in the garden.\nZo\xc3\xab said: \"Wow, 42 birds!\"";
  const std::vector<int> ids = spm.encode(sentence);
  REQUIRE(ids.size() >= 2);
  CHECK(ids[0] == 1);
  std::string decoded;
  for (std::size_t k = 1; k < ids.size(); ++k) decoded += tok.decode(ids[k - 1], ids[k]);
  CHECK(decoded == sentence);
  CHECK(std::count_if(ids.begin(), ids.end(), [](int id) { return id >= 3 && id < 259; }) >= 5);
  CHECK(std::count_if(ids.begin(), ids.end(), [](int id) { return id >= 259; }) >= 10);
  CHECK(ids.size() < sentence.size());
  CHECK(mixprec::models::spm_tokenizer::from_llama2c(tok).encode(sentence) == ids);
  fs::remove_all(dir);
  fs::remove_all(fs::path(in.model).parent_path());
}

TEST_CASE("convert: a separate classifier, grouped-query attention and the older tokenizer schema", "[convert]") {
  const fs::path dir = fresh_dir("generated");
  const int vocab = 259 + 5;
  const auto ck = tiny_model(vocab, 4, 2, /*shared=*/false);
  const std::string ck_path = (dir / "tiny.bin").string();
  mixprec::llama2c::save_checkpoint(ck, ck_path);

  SECTION("current schema, separate classifier, n_kv_heads < n_heads") {
    const std::string tok_path = (dir / "tok.bin").string();
    write_tokenizer(tok_path, current_pieces(5));
    const std::string out = (dir / "tiny.gguf").string();
    const auto s = convert_llama2c(ck_path, tok_path, out);
    CHECK_FALSE(s.legacy_tokenizer);
    const auto g = gguf::file::open(out);
    CHECK(same_floats(g.at("output.weight"), ck.classifier));
    CHECK(same_floats(g.at("token_embd.weight"), ck.token_embedding));
    CHECK(g.at("blk.1.attn_k.weight").dims == std::vector<std::uint64_t>{16, 8});
    CHECK(g.at("blk.1.attn_v.weight").dims == std::vector<std::uint64_t>{16, 8});
    CHECK(same_floats(g.at("blk.1.attn_k.weight"), ck.layers[1].wk));
    CHECK(g.kvs().get_u32("llama.attention.head_count") == 4);
    CHECK(g.kvs().get_u32("llama.attention.head_count_kv") == 2);
    CHECK(g.kvs().get_u32("llama.rope.dimension_count") == 4);
    CHECK(g.kvs().get_u32("llama.context_length") == 8);
    CHECK(g.kvs().get_string("general.name") == "tiny");
  }
  SECTION("older schema: byte tokens as characters (stories15M's) or raw bytes become <0xHH> of type BYTE") {
    const bool utf8 = GENERATE(true, false);
    INFO((utf8 ? "U+0000..U+00FF in UTF-8" : "raw bytes"));
    auto pieces = current_pieces(5);
    for (unsigned b = 0; b < 256; ++b)
      pieces[3 + b] = utf8 ? mixprec_cli::convert_detail::latin1_piece(b) : std::string(1, static_cast<char>(b));
    if (utf8) CHECK(pieces[3 + 0xFC] == "\xc3\xbc");
    pieces[259] = "a";  // a word equal to a byte token's old form: a duplicate unless the bytes are rewritten
    const std::string tok_path = (dir / "tok_old.bin").string();
    write_tokenizer(tok_path, pieces);
    const std::string out = (dir / "tiny_old.gguf").string();
    const auto s = convert_llama2c(ck_path, tok_path, out);
    CHECK(s.legacy_tokenizer);
    CHECK(s.byte_tokens == 256);
    const auto g = gguf::file::open(out);
    const auto& tokens = g.kvs().get_array("tokenizer.ggml.tokens");
    const auto& types = g.kvs().get_array("tokenizer.ggml.token_type");
    REQUIRE(tokens.type == gguf::value_type::string);
    REQUIRE(types.type == gguf::value_type::i32);
    REQUIRE(tokens.items.size() == static_cast<std::size_t>(vocab));
    REQUIRE(types.items.size() == static_cast<std::size_t>(vocab));
    CHECK(*tokens.items[3].get_if<std::string>() == "<0x00>");
    CHECK(*tokens.items[3 + 0x0A].get_if<std::string>() == "<0x0A>");
    CHECK(*tokens.items[3 + 0x61].get_if<std::string>() == "<0x61>");
    CHECK(*tokens.items[3 + 0x20].get_if<std::string>() == "<0x20>");
    CHECK(*tokens.items[259].get_if<std::string>() == "a");
    CHECK(*types.items[3 + 0xFF].get_if<std::int32_t>() == static_cast<std::int32_t>(llama_token_type::byte));
    CHECK(*types.items[259].get_if<std::int32_t>() == static_cast<std::int32_t>(llama_token_type::normal));
  }
  SECTION("two tokens with one text: llama.cpp cannot load that, refused") {
    auto pieces = current_pieces(5);
    pieces[263] = pieces[262];
    const std::string tok_path = (dir / "tok_dup.bin").string();
    write_tokenizer(tok_path, pieces);
    CHECK(error_code_of([&] { convert_llama2c(ck_path, tok_path, (dir / "dup.gguf").string()); }) == mixprec::errc::unsupported);
    CHECK_FALSE(fs::exists(dir / "dup.gguf"));
  }
}

TEST_CASE("convert: bad inputs throw typed errors and leave no file", "[convert][errors]") {
  // Beside `dir`, whose files are counted; written once for all the sections (none writes to it).
  static const auto in = tiny_llama_files("errors_in");
  const std::string& model_path = in.model;
  const std::string& tokenizer_path = in.tokenizer;
  const fs::path dir = fresh_dir("errors");
  // The cuts below (at half the size, 4 and 1 bytes short, a NaN at float 1000, the tokenizer 2 bytes
  // short) are inside these: the whole model file, and a header and 512 entries of at least 8 bytes.
  const auto model = read_bytes(model_path, tiny_llama_file_bytes());
  REQUIRE(model.size() == tiny_llama_file_bytes());
  const auto tokenizer = read_bytes(tokenizer_path, 4 + 512 * 8);
  const fs::path out = dir / "out.gguf";
  const std::size_t before = 0;
  REQUIRE(file_count(dir) == before);

  SECTION("a truncated checkpoint") {
    for (std::size_t keep : {std::size_t{0}, std::size_t{27}, std::size_t{28}, model.size() / 2, model.size() - 4}) {
      INFO("kept " << keep << " bytes");
      write_all(dir / "cut.bin", std::vector<char>(model.begin(), model.begin() + static_cast<std::ptrdiff_t>(keep)));
      CHECK(error_code_of([&] { convert_llama2c((dir / "cut.bin").string(), tokenizer_path, out.string()); }) == mixprec::errc::parse_error);
      CHECK(file_count(dir) == 1);  // only cut.bin: no output, no temporary
    }
  }
  SECTION("a tokenizer with fewer or more tokens than vocab_size") {
    auto tiny = tiny_model(259 + 5, 4, 4, true);
    mixprec::llama2c::save_checkpoint(tiny, (dir / "tiny.bin").string());
    for (int extra : {4, 6}) {
      INFO(259 + extra << " tokens for vocab_size " << 259 + 5);
      write_tokenizer(dir / "tok.bin", current_pieces(extra));
      CHECK(error_code_of([&] { convert_llama2c((dir / "tiny.bin").string(), (dir / "tok.bin").string(), out.string()); }) ==
            mixprec::errc::shape_mismatch);
    }
    // The model's own vocabulary with its last entry cut short: malformed, not mismatched.
    write_all(dir / "tok_cut.bin", std::vector<char>(tokenizer.begin(), tokenizer.end() - 2));
    CHECK(error_code_of([&] { convert_llama2c(model_path, (dir / "tok_cut.bin").string(), out.string()); }) == mixprec::errc::parse_error);
    CHECK_FALSE(fs::exists(out));
    CHECK(file_count(dir) == 3);
  }
  SECTION("non-finite weights") {
    auto bad = model;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bad.data() + 28 + 4 * 1000, &nan, 4);
    write_all(dir / "nan.bin", bad);
    CHECK(error_code_of([&] { convert_llama2c((dir / "nan.bin").string(), tokenizer_path, out.string()); }) == mixprec::errc::non_finite);
    CHECK(file_count(dir) == 1);
  }
  SECTION("an output that is one of the inputs, by any name") {
    write_all(dir / "model.bin", model);
    write_all(dir / "tok.bin", tokenizer);
    fs::create_symlink(dir / "model.bin", dir / "link.gguf");
    fs::create_hard_link(dir / "tok.bin", dir / "hard.gguf");
    for (const fs::path& target : {dir / "model.bin", dir / "tok.bin", dir / "link.gguf", dir / "hard.gguf"}) {
      INFO(target);
      CHECK(error_code_of([&] { convert_llama2c((dir / "model.bin").string(), (dir / "tok.bin").string(), target.string()); }) ==
            mixprec::errc::invalid_argument);
    }
    CHECK(read_bytes(dir / "model.bin") == model);
    CHECK(read_bytes(dir / "tok.bin") == tokenizer);
    CHECK(file_count(dir) == 4);
  }
  SECTION("a failure keeps an existing output as it was") {
    const std::vector<char> old = {'o', 'l', 'd'};
    write_all(out, old);
    write_all(dir / "cut.bin", std::vector<char>(model.begin(), model.end() - 1));
    CHECK(error_code_of([&] { convert_llama2c((dir / "cut.bin").string(), tokenizer_path, out.string()); }) == mixprec::errc::parse_error);
    CHECK(read_bytes(out) == old);
    CHECK(file_count(dir) == 2);
  }
  SECTION("missing inputs and an output folder that does not exist") {
    CHECK(error_code_of([&] { convert_llama2c((dir / "none.bin").string(), tokenizer_path, out.string()); }) == mixprec::errc::io_error);
    CHECK(error_code_of([&] { convert_llama2c(model_path, (dir / "none.bin").string(), out.string()); }) == mixprec::errc::io_error);
    CHECK(error_code_of([&] { convert_llama2c(model_path, tokenizer_path, (dir / "no" / "out.gguf").string()); }) == mixprec::errc::io_error);
    CHECK(file_count(dir) == 0);
  }
}
