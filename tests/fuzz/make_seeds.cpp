// Writes the seed corpora for the safetensors (files and sharded indexes), GGUF, imatrix and plan JSON
// fuzz targets (small valid files covering every dtype / value type, alignments and ranks) with mixprec's
// own writers, and structure-aware seeds whose header sizes overflow 64-bit arithmetic (llama2.c, IDX):
//   cmake --build build-fuzz --target make_seeds && build-fuzz/make_seeds tests/fuzz/corpus
// The files are committed; rerun this after changing the formats' coverage.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <filesystem>
#include <string>
#include <vector>

#include <cstdint>
#include <cstring>
#include <fstream>

#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/io/safetensors.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"

namespace gguf = mixprec::gguf;
namespace st = mixprec::safetensors;

static void write_bytes(const std::filesystem::path& path, const void* data, std::size_t n) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

static void write_text(const std::filesystem::path& path, const std::string& s) { write_bytes(path, s.data(), s.size()); }

// s with the first occurrence of `from` overwritten by `to` of the same length (every size field of
// a binary file still holds): how the seeds of malformed files are made from the writers' output.
static std::string overwritten(std::string s, const std::string& from, const std::string& to) {
  const std::size_t at = s.find(from);
  if (at == std::string::npos || from.size() != to.size()) {
    std::fprintf(stderr, "make_seeds: cannot overwrite '%s'\n", from.c_str());
    std::exit(1);
  }
  return s.replace(at, to.size(), to);
}

// A safetensors file around a header written by hand: length, JSON padded with spaces to 8, data.
static std::string safetensors_bytes(std::string json, const std::string& data) {
  json.append((8 - json.size() % 8) % 8, ' ');
  const std::uint64_t n = json.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + json + data;
}

static std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 37 + seed * 11) & 0xFF);
  return b;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  std::filesystem::create_directories(root / "safetensors");
  std::filesystem::create_directories(root / "gguf");

  // safetensors
  mixprec::row_matrix a(3, 4), b(1, 5);
  for (mixprec::index_t i = 0; i < a.size(); ++i) a.data()[i] = static_cast<float>(i) - 5.5f;
  for (mixprec::index_t i = 0; i < b.size(); ++i) b.data()[i] = 0.25f * static_cast<float>(i);
  const auto af = st::encode(a, st::dtype::f32), ah = st::encode(a, st::dtype::f16), bb = st::encode(b, st::dtype::bf16);
  st::write((root / "safetensors" / "three_dtypes.safetensors").string(),
            std::vector<st::tensor_view>{{"w", st::dtype::f32, {3, 4}, af},
                                         {"h", st::dtype::f16, {2, 3, 2}, ah},
                                         {"b", st::dtype::bf16, {5}, bb}},
            {{"format", "pt"}});
  st::write((root / "safetensors" / "misaligned_f32.safetensors").string(),
            std::vector<st::tensor_view>{{"odd", st::dtype::bf16, {5}, bb}, {"w", st::dtype::f32, {12}, af}});
  st::write((root / "safetensors" / "empty.safetensors").string(), std::vector<st::tensor_view>{});
  st::write((root / "safetensors" / "scalar_and_zero.safetensors").string(),
            std::vector<st::tensor_view>{{"s", st::dtype::f32, {}, std::span(af).first(4)},
                                         {"z", st::dtype::f16, {0, 4}, {}}});

  // ... and one seed per header that nlohmann's parser took but the reference reader refuses (each a
  // parse_error now): a tensor named twice at two offsets (last entry won), "__metadata__" twice, a
  // metadata key twice, a field twice in one tensor, a hole between tensors, bytes after the last one,
  // a raw NUL in the header (nlohmann stopped reading there), a byte order mark, an offset of -0 (a float
  // to serde_json), 128 levels of nesting.
  {
    std::ostringstream two;
    st::write(two, std::vector<st::tensor_view>{{"a", st::dtype::f32, {2}, std::span(af).first(8)},
                                                {"b", st::dtype::f32, {2}, std::span(af).subspan(8, 8)}},
              {{"k1", "x"}, {"k2", "y"}});
    const std::filesystem::path d = root / "safetensors";
    write_text(d / "dup_tensor.safetensors", overwritten(two.str(), "\"b\":", "\"a\":"));
    write_text(d / "dup_metadata_key.safetensors", overwritten(two.str(), "\"k2\"", "\"k1\""));
    write_text(d / "dup_field.safetensors", overwritten(two.str(), "\"shape\"", "\"dtype\""));
    write_text(d / "trailing_bytes.safetensors", two.str() + "polyglot");
    const std::string x = R"("x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    const std::string four(4, '\x01'), eight(8, '\x02');
    write_text(d / "dup_metadata.safetensors",
               safetensors_bytes(R"({"__metadata__":{"a":"1"},)" + x + R"(,"__metadata__":{"a":"2"}})", four));
    write_text(d / "hole.safetensors",
               safetensors_bytes("{" + x + R"(,"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", four + eight));
    write_text(d / "nul_header.safetensors",
               safetensors_bytes("{" + x + "}" + std::string(1, '\0') + R"({"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 eight));
    write_text(d / "bom.safetensors", safetensors_bytes("\xEF\xBB\xBF{" + x + "}", four));
    write_text(d / "negative_zero.safetensors",
               safetensors_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[-0,4]}})", four));
    write_text(d / "deep.safetensors",
               safetensors_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":)" + std::string(126, '[') +
                                     std::string(126, ']') + "}}",
                                 four));
  }

  // sharded safetensors indexes (model.safetensors.index.json): the layout transformers writes, one
  // without "metadata", one with other metadata keys and a float total_size, shards in a sub-folder; and
  // what parse_index refuses: a tensor mapped twice, a shard outside the folder, shards 1 and 2 "of 3",
  // a raw NUL before a second document, a byte order mark.
  {
    const std::filesystem::path d = root / "safetensors_index";
    std::filesystem::create_directories(d);
    nlohmann::ordered_json wm = nlohmann::ordered_json::object();
    wm["lm_head.weight"] = "model-00002-of-00002.safetensors";
    wm["model.embed_tokens.weight"] = "model-00001-of-00002.safetensors";
    wm["model.layers.0.self_attn.q_proj.weight"] = "model-00001-of-00002.safetensors";
    wm["model.norm.weight"] = "model-00002-of-00002.safetensors";
    nlohmann::ordered_json hf = {{"metadata", {{"total_size", 1114624}}}, {"weight_map", wm}};
    write_text(d / "hf.json", hf.dump(2));
    write_text(d / "no_metadata.json", nlohmann::ordered_json{{"weight_map", wm}}.dump());
    write_text(d / "extra_metadata.json",
               R"({"metadata":{"total_size":1234.0,"total_parameters":557312,"mlx_version":"0.1"},)"
               R"("weight_map":{"a":"weights/x.safetensors","b":"weights/y.safetensors"}})");
    const std::string two =
        R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})";
    write_text(d / "dup_tensor.json", overwritten(two, "\"b\"", "\"a\""));
    write_text(d / "escape.json", R"({"weight_map":{"a":"../other/model.safetensors"}})");
    write_text(d / "missing_shard.json",
               R"({"weight_map":{"a":"model-00001-of-00003.safetensors","b":"model-00002-of-00003.safetensors"}})");
    write_text(d / "nul.json", two + std::string(1, '\0') + R"({"weight_map":{"a":"/etc/passwd"}})");
    write_text(d / "bom.json", "\xEF\xBB\xBF" + two);
  }

  // GGUF
  using gguf::array;
  using gguf::value;
  using gguf::value_type;
  const gguf::metadata kvs = {
      {"general.architecture", value("llama")},
      {"u8", value(std::uint8_t{1})},       {"i8", value(std::int8_t{-1})},
      {"u16", value(std::uint16_t{2})},     {"i16", value(std::int16_t{-2})},
      {"u32", value(std::uint32_t{3})},     {"i32", value(std::int32_t{-3})},
      {"f32", value(1.5f)},                 {"bool", value(true)},
      {"u64", value(std::uint64_t{4})},     {"i64", value(std::int64_t{-4})},
      {"f64", value(2.25)},
      {"tokens", value(array{value_type::string, {value("<s>"), value("a"), value("")}})},
      {"nested", value(array{value_type::array, {value(array{value_type::i16, {value(std::int16_t{7})}})}})},
  };
  const auto f32 = pattern(4 * 8, 1), q8 = pattern(34 * 2, 2), q4k = pattern(144, 3), f16 = pattern(2 * 32, 4);
  gguf::write((root / "gguf" / "all_types.gguf").string(), kvs,
              std::vector<gguf::tensor_source>{{"token_embd.weight", 0, {4, 2}, f32, {}},
                                               {"blk.0.attn_q.weight", 8, {32, 2}, q8, {}},
                                               {"blk.0.ffn_down.weight", 12, {256}, q4k, {}},
                                               {"output_norm.weight", 1, {8, 2, 2}, f16, {}}});
  gguf::metadata k64 = {{"general.alignment", value(std::uint32_t{64})}, {"name", value("x")}};
  gguf::write((root / "gguf" / "align64.gguf").string(), k64,
              std::vector<gguf::tensor_source>{{"a", 30, {3}, std::span(f32).first(6), {}},
                                               {"b", 0, {2, 1, 1, 1}, std::span(f32).first(8), {}}});
  gguf::write((root / "gguf" / "no_tensors.gguf").string(), kvs, std::vector<gguf::tensor_source>{});
  // A type mixprec reads and carries but does not decode: MXFP4 experts (32 values in 17 bytes), as gpt-oss keeps them.
  const auto mxfp4 = pattern(17 * 2 * 2 * 2, 5);
  gguf::write((root / "gguf" / "mxfp4_experts.gguf").string(), gguf::metadata{{"general.architecture", value("gpt-oss")}},
              std::vector<gguf::tensor_source>{{"blk.0.ffn_up_exps.weight", 39, {64, 2, 2}, mxfp4, {}},
                                               {"blk.0.attn_q.weight", 1, {8, 4}, f16, {}}});
  {  // A duplicated metadata key, which ggml's reader and mixprec's refuse (the writer too: made by overwriting).
    std::ostringstream dup;
    gguf::write(dup, gguf::metadata{{"general.name", value("a")}, {"general.namf", value("b")}},
                std::vector<gguf::tensor_source>{{"w", 0, {4, 2}, f32, {}}});
    write_text(root / "gguf" / "duplicate_key.gguf", overwritten(dup.str(), "general.namf", "general.name"));
  }

  // imatrix (legacy .dat): two entries and the trailer.
  std::filesystem::create_directories(root / "imatrix");
  mixprec::imatrix::file im;
  im.entries["blk.0.attn_q.weight"] = {4, Eigen::VectorXf::LinSpaced(8, 0.5f, 4.0f)};
  im.entries["blk.0.ffn_down.weight"] = {4, Eigen::VectorXf::Constant(16, 2.0f)};
  im.last_chunk = 4;
  im.dataset = "calib.txt";
  const auto imb = mixprec::imatrix::serialize(im);
  write_bytes(root / "imatrix" / "two_entries.dat", imb.data(), imb.size());
  // imatrix (GGUF): a matrix and 4 merged experts, one of which saw no token, with every KV.
  mixprec::imatrix::file ig;
  ig.entries["blk.0.attn_q.weight"].values = Eigen::VectorXf::LinSpaced(8, 0.5f, 4.0f);
  ig.entries["blk.0.attn_q.weight"].counts = {512.0f};
  ig.entries["blk.0.ffn_up_exps.weight"].values = Eigen::VectorXf::LinSpaced(16, 0.0f, 30.0f);
  ig.entries["blk.0.ffn_up_exps.weight"].counts = {100.0f, 0.0f, 300.0f, 112.0f};
  ig.last_chunk = 1;
  ig.chunk_size = 512;
  ig.dataset = "calib.txt";
  const auto igb = mixprec::imatrix::serialize_gguf(ig);
  write_bytes(root / "imatrix" / "experts.gguf", igb.data(), igb.size());
  // ... and one matrix with its dims as ggml writes them (trailing 1s dropped: [ne0], [1]), no KVs.
  const float flat_sums[4] = {1.0f, 2.0f, 0.0f, 8.0f}, flat_count[1] = {4.0f};
  gguf::write((root / "imatrix" / "flat_dims.gguf").string(), gguf::metadata{},
              std::vector<gguf::tensor_source>{{"w.in_sum2", 0, {4}, std::as_bytes(std::span(flat_sums)), {}},
                                               {"w.counts", 0, {1}, std::as_bytes(std::span(flat_count)), {}}});

  // ... and the same weight twice: a legacy entry (llama.cpp's loader let the last win) and an in_sum2
  // tensor (the GGUF container refuses a repeated tensor name).
  {
    mixprec::imatrix::file two;
    two.entries["blk.0.attn_k.weight"] = {2, Eigen::VectorXf::LinSpaced(4, 1.0f, 4.0f)};
    two.entries["blk.0.attn_q.weight"] = {2, Eigen::VectorXf::Constant(4, 9.0f)};
    const auto l = mixprec::imatrix::serialize(two), g = mixprec::imatrix::serialize_gguf(two);
    write_text(root / "imatrix" / "dup_legacy.dat",
               overwritten(std::string(l.begin(), l.end()), "blk.0.attn_q.weight", "blk.0.attn_k.weight"));
    write_text(root / "imatrix" / "dup_in_sum2.gguf",
               overwritten(std::string(g.begin(), g.end()), "blk.0.attn_q.weight.in_sum2", "blk.0.attn_k.weight.in_sum2"));
  }

  // plan JSON: a knapsack plan of two layers and the sensitivity table it came from.
  std::filesystem::create_directories(root / "plan_json");
  mixprec::sensitivity_table t;
  t.add("fc1", 8, 64, "int4/g32/sym/mse/s16", 0.02).add("fc1", 8, 64, "int8", 0.001);
  t.add("fc2", 4, 64, "int4/g32/sym/mse/s16", 0.01).add("fc2", 4, 64, "int8", 0.0005);
  const mixprec::plan p = mixprec::plan_builder{t, mixprec::knapsack_policy{}, mixprec::bits_budget{6.0}}.build();
  std::ofstream(root / "plan_json" / "plan.json") << nlohmann::json(p).dump(1);
  std::ofstream(root / "plan_json" / "table.json") << nlohmann::json(t).dump(1);
  // ... and one over llama.cpp's block types (whose blocks must tile the rows).
  mixprec::sensitivity_table tg;
  tg.add("blk.0.attn_q.weight", 4, 256, "q4_K", 0.02).add("blk.0.attn_q.weight", 4, 256, "q8_0", 0.001);
  tg.add("blk.0.ffn_down.weight", 4, 96, "q4_0", 0.01).add("blk.0.ffn_down.weight", 4, 96, "f16", 0.0);
  const mixprec::plan pg = mixprec::plan_builder{tg, mixprec::knapsack_policy{}, mixprec::bits_budget{6.0}}.build();
  std::ofstream(root / "plan_json" / "ggml_plan.json") << nlohmann::json(pg).dump(1);
  // ... and what parse_plan / parse_sensitivity_table refuse that nlohmann::json::parse took: a key twice
  // (a layer's "spec"), a layer planned twice, a layer listed twice in a table, a raw NUL byte followed
  // by another document.
  {
    const std::string text = nlohmann::json(p).dump();
    std::string two_specs = text;
    two_specs.insert(two_specs.find("\"layers\":[{") + 11, "\"spec\":\"int8\",");
    write_text(root / "plan_json" / "dup_key.json", two_specs);
    nlohmann::json twice = p;
    twice["layers"].push_back(nlohmann::json(twice["layers"][0]));
    write_text(root / "plan_json" / "dup_layer.json", twice.dump(1));
    nlohmann::json listed = t;
    listed["layers"].push_back(nlohmann::json(listed["layers"][0]));
    write_text(root / "plan_json" / "table_dup_layer.json", listed.dump(1));
    write_text(root / "plan_json" / "nul.json", text + std::string(1, '\0') + two_specs);
  }

  // Headers whose size arithmetic overflows 64 bits (each field alone is in range).
  const std::int32_t l2c[7] = {1048576, 2, 1048574, 1, 1, 1, 14};  // 2^62 floats: 28 + 4n wraps to 28
  write_bytes(root / "llama2c" / "size_wraps.bin", l2c, sizeof l2c);
  const std::uint8_t idx[] = {0, 0, 8, 3, 0, 2, 0, 0, 0, 2, 0, 0, 64, 0, 0, 0};  // 2^17 x 2^17 x 2^30 = 2^64
  write_bytes(root / "idx" / "count_wraps.idx", idx, sizeof idx);
  return 0;
}
