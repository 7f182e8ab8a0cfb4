// GGUF: hand-built files with known bytes, writer/reader round trips of every value type, alignment,
// streaming, rewrite, and the corrupt inputs the reader must refuse with typed errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <unistd.h>

#include "mixprec/io/gguf.hpp"
#include "support/errors.hpp"

namespace gguf = mixprec::gguf;
using mixprec::errc;

namespace {

// Little-endian byte builder for hand-made files.
struct builder {
  std::vector<std::byte> b;
  template <class T>
  builder& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof v);
    return *this;
  }
  builder& str(std::string_view s) {
    put<std::uint64_t>(s.size());
    for (char c : s) b.push_back(static_cast<std::byte>(c));
    return *this;
  }
  builder& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    for (char c : std::string_view("GGUF")) b.push_back(static_cast<std::byte>(c));
    return put(version).put(n_tensors).put(n_kv);
  }
  builder& pad(std::size_t a) {
    while (b.size() % a) b.push_back(std::byte{0});
    return *this;
  }
};

gguf::file parse(std::vector<std::byte> b) { return gguf::file::parse(mixprec::mapped_file::from_bytes(std::move(b), "t")); }

std::vector<std::byte> to_bytes(const std::string& s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// The error parsing b throws, or nullopt when it parses.
std::optional<mixprec::error> failure(std::vector<std::byte> b) {
  return mixprec::test::error_of([&] { (void)parse(std::move(b)); });
}

void parse_error(std::vector<std::byte> b, const std::string& needle) {
  const auto e = failure(std::move(b));
  REQUIRE(e);
  CHECK(e->code() == errc::parse_error);
  CHECK_THAT(e->what(), Catch::Matchers::Contains(needle));
}

std::string write_to_string(const gguf::metadata& kvs, const std::vector<gguf::tensor_source>& ts) {
  std::ostringstream out;
  gguf::write(out, kvs, ts);
  return out.str();
}

// Every value type, nested arrays, empty containers and extreme values.
gguf::metadata all_types() {
  using gguf::array;
  using gguf::value;
  using gguf::value_type;
  return {
      {"general.architecture", value("llama")},
      {"k.u8", value(std::uint8_t{255})},
      {"k.i8", value(std::int8_t{-128})},
      {"k.u16", value(std::uint16_t{65535})},
      {"k.i16", value(std::int16_t{-32768})},
      {"k.u32", value(std::uint32_t{4000000000u})},
      {"k.i32", value(std::int32_t{-2000000000})},
      {"k.f32", value(0.1f)},
      {"k.bool.t", value(true)},
      {"k.bool.f", value(false)},
      {"k.str.empty", value("")},
      {"k.str.utf8", value("h\xC3\xA9 \xE2\x82\xAC")},
      {"k.u64", value(std::numeric_limits<std::uint64_t>::max())},
      {"k.i64", value(std::numeric_limits<std::int64_t>::min())},
      {"k.f64", value(-1e300)},
      {"k.arr.empty", value(array{value_type::f32, {}})},
      {"k.arr.str", value(array{value_type::string, {value("a"), value(""), value("ccc")}})},
      {"k.arr.i32", value(array{value_type::i32, {value(std::int32_t{1}), value(std::int32_t{-2})}})},
      {"k.arr.bool", value(array{value_type::boolean, {value(true), value(false)}})},
      {"k.arr.nested",
       value(array{value_type::array,
                   {value(array{value_type::u8, {value(std::uint8_t{1}), value(std::uint8_t{2})}}),
                    value(array{value_type::string, {value("x")}}),
                    value(array{value_type::array, {value(array{value_type::f64, {value(2.5)}})}})}})},
  };
}

}  // namespace

TEST_CASE("GGUF type table matches ggml's block sizes", "[io][gguf]") {
  struct row {
    std::uint32_t code, block, bytes;
  };
  // ggml-common.h / gguf-py GGML_QUANT_SIZES, written out independently of the header.
  for (row r : {row{0, 1, 4}, row{1, 1, 2}, row{2, 32, 18}, row{3, 32, 20}, row{8, 32, 34}, row{12, 256, 144},
                row{14, 256, 210}, row{30, 1, 2}, row{10, 256, 84}, row{13, 256, 176}, row{24, 1, 1}}) {
    const auto t = gguf::type_traits_of(r.code);
    REQUIRE(t.has_value());
    CHECK(t->block_size == r.block);
    CHECK(t->type_size == r.bytes);
  }
  CHECK(gguf::type_traits_of(2)->name == "q4_0");
  CHECK(gguf::type_traits_of(12)->name == "q4_K");
  CHECK(gguf::type_traits_of(2)->implemented);
  // Types mixprec does not decode are known all the same (tests/formats/ggml_types_test.cpp has them all).
  for (row r : {row{39, 32, 17}, row{9, 32, 36}, row{16, 256, 66}, row{40, 64, 36}, row{42, 64, 18}}) {
    const auto t = gguf::type_traits_of(r.code);
    REQUIRE(t.has_value());
    CHECK(t->block_size == r.block);
    CHECK(t->type_size == r.bytes);
    CHECK_FALSE(t->implemented);
  }
  CHECK(gguf::type_traits_of(39)->name == "mxfp4");
  // Removed from ggml (no sizes) and never defined: no traits.
  for (std::uint32_t gone : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 43u, 1000u}) CHECK_FALSE(gguf::type_traits_of(gone).has_value());
}

TEST_CASE("GGUF reads every type ggml defines, MXFP4 included, and rewrite carries them byte for byte", "[io][gguf]") {
  // One 3-D tensor per type: two blocks per row, 2 x 3 rows, patterned bytes.
  std::vector<std::vector<std::byte>> storage;
  std::vector<gguf::tensor_source> ts;
  for (const mixprec::ggml::type_info& t : mixprec::ggml::type_table) {
    if (t.removed()) continue;
    const std::size_t bytes = 2 * 6 * t.type_size;
    std::vector<std::byte> b(bytes);
    for (std::size_t i = 0; i < bytes; ++i) b[i] = static_cast<std::byte>((i * 131 + t.code * 7) & 0xFF);
    storage.push_back(std::move(b));
  }
  std::size_t k = 0;
  for (const mixprec::ggml::type_info& t : mixprec::ggml::type_table)
    if (!t.removed())
      ts.push_back({"t." + std::string(t.name), t.code, {2 * std::uint64_t{t.block_size}, 2, 3}, storage[k++], {}});
  REQUIRE(ts.size() == 35);
  const std::string file = write_to_string({{"general.architecture", gguf::value("gpt-oss")}}, ts);
  const gguf::file g = parse(to_bytes(file));
  REQUIRE(g.tensors().size() == ts.size());
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const gguf::tensor_info& t = g.tensors()[i];
    INFO(t.name);
    CHECK(t.type == ts[i].type);
    CHECK(t.size == storage[i].size());
    CHECK(std::equal(t.bytes.begin(), t.bytes.end(), storage[i].begin(), storage[i].end()));
  }
  // Copied through rewrite unchanged: the same file, byte for byte.
  std::ostringstream out;
  gguf::rewrite(g, g.kvs(), out);
  CHECK(out.str() == file);
  // Values are another matter: to_float reads f32/f16/bf16 and names what it does not decode.
  const auto e = mixprec::test::error_of([&] { (void)g.to_float("t.mxfp4"); });
  REQUIRE(e);
  CHECK(e->code() == errc::unsupported);
  CHECK_THAT(e->what(), Catch::Matchers::Contains("'t.mxfp4'") && Catch::Matchers::Contains("mixprec does not decode mxfp4"));
  // A row that MXFP4's block of 32 does not divide is refused as for any type.
  CHECK(mixprec::test::error_code_of([] {
          std::ostringstream o;
          gguf::writer w(o, {});
          w.add_tensor("x", 39, {48, 2});
        }) == errc::invalid_argument);
}

TEST_CASE("GGUF refuses type codes ggml has removed or never defined, naming the tensor and the type", "[io][gguf]") {
  auto one_tensor = [](std::uint32_t type) {
    builder f;
    f.header(1, 0).str("blk.0.w").put<std::uint32_t>(1).put<std::uint64_t>(32).put(type).put<std::uint64_t>(0).pad(32);
    f.b.resize(f.b.size() + 64);
    return f.b;
  };
  // ggml.h keeps these codes as comments; ggml.c gives them block size 0 and its gguf.cpp refuses them.
  for (const auto& [code, name] : std::vector<std::pair<std::uint32_t, std::string>>{{4, "q4_2"}, {5, "q4_3"}, {31, "q4_0_4_4"}, {32, "q4_0_4_8"},
                                                                                     {33, "q4_0_8_8"}, {36, "iq4_nl_4_4"}, {37, "iq4_nl_4_8"},
                                                                                     {38, "iq4_nl_8_8"}}) {
    INFO("code " << code);
    const auto e = failure(one_tensor(code));
    REQUIRE(e);
    CHECK(e->code() == errc::unsupported);
    CHECK_THAT(e->what(), Catch::Matchers::Contains("'blk.0.w'") && Catch::Matchers::Contains("(" + name + ")") &&
                              Catch::Matchers::Contains("removed"));
    std::ostringstream out;
    gguf::writer w(out, {});
    const std::uint32_t c = code;
    CHECK(mixprec::test::error_code_of([&] { w.add_tensor("w", c, {32}); }) == errc::unsupported);
  }
  for (std::uint32_t code : {43u, 1000u}) {
    const auto e = failure(one_tensor(code));
    REQUIRE(e);
    CHECK(e->code() == errc::unsupported);
    CHECK_THAT(e->what(), Catch::Matchers::Contains("'blk.0.w'") &&
                              Catch::Matchers::Contains("unknown ggml type " + std::to_string(code)));
  }
  CHECK(parse(one_tensor(39)).at("blk.0.w").size == 17);  // the same file with MXFP4 reads
}

TEST_CASE("GGUF refuses duplicate metadata keys and tensor names by name, as ggml's gguf.cpp does", "[io][gguf]") {
  builder keys;
  keys.header(0, 3).str("general.name").put<std::uint32_t>(8).str("a").str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(32);
  keys.str("general.name").put<std::uint32_t>(8).str("b");
  parse_error(keys.b, "duplicate metadata key 'general.name'");
  builder names;
  names.header(2, 0);
  names.str("blk.0.ffn_up_exps.weight").put<std::uint32_t>(1).put<std::uint64_t>(32).put<std::uint32_t>(39).put<std::uint64_t>(0);
  names.str("blk.0.ffn_up_exps.weight").put<std::uint32_t>(1).put<std::uint64_t>(32).put<std::uint32_t>(39).put<std::uint64_t>(32);
  names.pad(32);
  names.b.resize(names.b.size() + 64);
  parse_error(names.b, "duplicate tensor name 'blk.0.ffn_up_exps.weight'");
}

TEST_CASE("GGUF reads a hand-built v3 file", "[io][gguf]") {
  builder f;
  f.header(2, 3);
  f.str("general.architecture").put<std::uint32_t>(8).str("llama");
  f.str("llama.block_count").put<std::uint32_t>(4).put<std::uint32_t>(12);
  f.str("tokenizer.ggml.tokens").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(2).str("<s>").str("hi");
  // F32 tensor ne0 = 4, ne1 = 2 at offset 0 (32 bytes); Q8_0 tensor ne0 = 32 at offset 32 (34 bytes).
  f.str("w").put<std::uint32_t>(2).put<std::uint64_t>(4).put<std::uint64_t>(2).put<std::uint32_t>(0).put<std::uint64_t>(0);
  f.str("q").put<std::uint32_t>(1).put<std::uint64_t>(32).put<std::uint32_t>(8).put<std::uint64_t>(32);
  const std::size_t infos_end = f.b.size();
  f.pad(32);
  const std::size_t data = f.b.size();
  for (int i = 0; i < 8; ++i) f.put<float>(static_cast<float>(i) - 2.5f);
  for (int i = 0; i < 34; ++i) f.put<std::uint8_t>(static_cast<std::uint8_t>(i));
  const gguf::file g = parse(f.b);

  CHECK(g.version() == 3);
  CHECK(g.alignment() == 32);
  CHECK(g.data_offset() == data);
  CHECK(data > infos_end);
  REQUIRE(g.kvs().size() == 3);
  CHECK(g.kvs().items()[0].key == "general.architecture");
  CHECK(g.kvs().get_string("general.architecture") == "llama");
  CHECK(g.kvs().get_u32("llama.block_count") == 12);
  const gguf::array& toks = g.kvs().get_array("tokenizer.ggml.tokens");
  CHECK(toks.type == gguf::value_type::string);
  REQUIRE(toks.items.size() == 2);
  CHECK(*toks.items[1].get_if<std::string>() == "hi");

  REQUIRE(g.tensors().size() == 2);
  const gguf::tensor_info& w = g.at("w");
  CHECK(w.dims == std::vector<std::uint64_t>{4, 2});
  CHECK(w.rows() == 2);
  CHECK(w.row_length() == 4);
  CHECK(w.size == 32);
  const mixprec::row_matrix m = g.to_float("w");
  REQUIRE(m.rows() == 2);
  REQUIRE(m.cols() == 4);
  CHECK(m(0, 0) == -2.5f);
  CHECK(m(1, 3) == 4.5f);  // element 7: ne0 is contiguous
  const gguf::tensor_info& q = g.at("q");
  CHECK(q.type == 8);
  CHECK(q.size == 34);
  CHECK(q.bytes.data() == g.at("w").bytes.data() + 32);
  CHECK(static_cast<int>(q.bytes[33]) == 33);
  CHECK_THROWS_AS(g.to_float("q"), mixprec::error);

  // Getters name the key and the type.
  const auto e = mixprec::test::error_of([&] { (void)g.kvs().get_u32("general.architecture"); });
  REQUIRE(e);  // a string is not read as u32
  CHECK(e->code() == errc::invalid_argument);
  CHECK_THAT(e->what(), Catch::Matchers::Contains("string"));
  CHECK_THROWS_AS(g.kvs().get_u32("missing"), mixprec::error);
  CHECK(g.kvs().find("missing") == nullptr);

  // Version 2 has the same layout.
  auto v2 = f.b;
  v2[4] = std::byte{2};
  CHECK(parse(v2).version() == 2);
}

TEST_CASE("GGUF round-trips every value type, nested arrays and tensors byte for byte", "[io][gguf]") {
  const gguf::metadata kvs = all_types();
  std::vector<std::byte> f32(4 * 64), q4(18 * 4);
  for (std::size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<std::byte>(i * 7);
  for (std::size_t i = 0; i < q4.size(); ++i) q4[i] = static_cast<std::byte>(255 - i);
  const std::vector<gguf::tensor_source> ts = {{"a.weight", 0, {16, 4}, f32, {}},
                                               {"b.weight", 2, {64, 2}, q4, {}},
                                               {"empty", 1, {0, 3}, {}, {}}};
  const std::string s1 = write_to_string(kvs, ts);
  const gguf::file g = parse(to_bytes(s1));
  CHECK(g.kvs() == kvs);
  CHECK(g.kvs().get_u64("k.u64") == std::numeric_limits<std::uint64_t>::max());
  CHECK(g.kvs().get<std::int64_t>("k.i64") == std::numeric_limits<std::int64_t>::min());
  CHECK(g.kvs().get_f32("k.f32") == 0.1f);
  CHECK(g.kvs().get_bool("k.bool.t"));
  const auto& nested = g.kvs().get_array("k.arr.nested");
  REQUIRE(nested.items.size() == 3);
  CHECK(nested.items[2].get_if<gguf::array>()->items[0].get_if<gguf::array>()->items[0] == gguf::value(2.5));
  REQUIRE(g.tensors().size() == 3);
  CHECK(g.tensors()[0].name == "a.weight");
  CHECK(std::equal(g.at("a.weight").bytes.begin(), g.at("a.weight").bytes.end(), f32.begin(), f32.end()));
  CHECK(std::equal(g.at("b.weight").bytes.begin(), g.at("b.weight").bytes.end(), q4.begin(), q4.end()));
  CHECK(g.at("b.weight").offset == 256);
  CHECK(g.at("empty").size == 0);
  for (const auto& t : g.tensors()) CHECK((g.data_offset() + t.offset) % 32 == 0);

  // Writing what was read gives the same bytes.
  std::vector<gguf::tensor_source> again;
  for (const auto& t : g.tensors()) again.push_back({t.name, t.type, t.dims, t.bytes, {}});
  CHECK(write_to_string(g.kvs(), again) == s1);

  // And the same file through a path.
  const std::string path = (std::filesystem::temp_directory_path() / ("mixprec_gguf_" + std::to_string(::getpid()) + ".gguf")).string();
  gguf::write(path, kvs, ts);
  const gguf::file d = gguf::file::open(path);
  CHECK(d.kvs() == kvs);
  CHECK(std::filesystem::file_size(path) == s1.size());
  std::filesystem::remove(path);
}

TEST_CASE("GGUF honours general.alignment 64 and streams tensors from callbacks in order", "[io][gguf]") {
  gguf::metadata kvs = {{"general.alignment", gguf::value(std::uint32_t{64})}, {"x", gguf::value("y")}};
  int calls = 0;
  std::vector<gguf::tensor_source> ts;
  for (int i = 0; i < 3; ++i) {
    const std::uint64_t n = 32u * static_cast<unsigned>(i + 1);
    ts.push_back({"t" + std::to_string(i), 8, {n}, {}, [&calls, i, n] {
                    CHECK(calls == i);  // called one at a time, in order
                    ++calls;
                    return std::vector<std::byte>(n / 32 * 34, static_cast<std::byte>(i + 1));
                  }});
  }
  const std::string s = write_to_string(kvs, ts);
  CHECK(calls == 3);
  const gguf::file g = parse(to_bytes(s));
  CHECK(g.alignment() == 64);
  CHECK(g.data_offset() % 64 == 0);
  std::uint64_t expect_offset = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& t = g.tensors()[static_cast<std::size_t>(i)];
    CHECK(t.offset == expect_offset);
    CHECK(t.offset % 64 == 0);
    CHECK(t.size == 34u * static_cast<unsigned>(i + 1));
    CHECK(static_cast<int>(t.bytes[0]) == i + 1);
    expect_offset = (t.offset + t.size + 63) / 64 * 64;
  }
  CHECK(s.size() == g.data_offset() + expect_offset);  // every tensor padded, the last one too
  // The padding after a tensor is zeros (t0: 34 bytes, then 30 bytes of padding).
  for (std::size_t i = g.data_offset() + 34; i < g.data_offset() + 64; ++i) CHECK(s[i] == 0);
  CHECK(s[g.data_offset() + 33] == 1);

  // An alignment that is not a power of two is refused on both sides.
  kvs.set("general.alignment", gguf::value(std::uint32_t{48}));
  std::ostringstream out;
  CHECK_THROWS_AS(gguf::writer(out, kvs), mixprec::error);
}

TEST_CASE("GGUF rewrite keeps KVs and untouched tensors, re-encodes the chosen ones", "[io][gguf]") {
  gguf::metadata kvs = all_types();
  kvs.set("general.file_type", gguf::value(std::uint32_t{0}));
  std::vector<float> vals(32 * 2);
  for (std::size_t i = 0; i < vals.size(); ++i) vals[i] = static_cast<float>(i) * 0.25f - 3.0f;
  std::vector<std::byte> wb(vals.size() * 4), keep(8);
  std::memcpy(wb.data(), vals.data(), wb.size());
  for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = static_cast<std::byte>(i + 100);
  const std::string s = write_to_string(kvs, {{"w", 0, {32, 2}, wb, {}}, {"norm", 0, {2}, keep, {}}});
  const gguf::file src = parse(to_bytes(s));

  gguf::metadata edited = src.kvs();
  edited.set("general.file_type", gguf::value(std::uint32_t{1}));
  edited.set("mixprec.note", gguf::value("rewritten"));
  CHECK(edited.erase("k.f64"));
  CHECK_FALSE(edited.erase("k.f64"));
  std::vector<std::string> converted;
  std::ostringstream out;
  gguf::rewrite(
      src, edited, out, [](const gguf::tensor_info& t) { return t.name == "w" ? 1u : t.type; },
      [&](const gguf::tensor_info& t, std::uint32_t type) {
        converted.push_back(t.name);
        CHECK(type == 1);
        const mixprec::row_matrix m = src.to_float(t.name);
        std::vector<std::byte> b(static_cast<std::size_t>(m.size()) * 2);
        for (mixprec::index_t i = 0; i < m.size(); ++i) {
          const std::uint16_t h = mixprec::fp32_to_fp16(m.data()[i]);
          std::memcpy(b.data() + 2 * i, &h, 2);
        }
        return b;
      });
  CHECK(converted == std::vector<std::string>{"w"});
  const gguf::file dst = parse(to_bytes(out.str()));
  CHECK(dst.kvs() == edited);
  CHECK(dst.kvs().items().back().key == "mixprec.note");
  CHECK(dst.kvs().get_u32("general.file_type") == 1);
  CHECK(dst.kvs().find("k.f64") == nullptr);
  CHECK(dst.at("w").type == 1);
  CHECK(dst.at("w").size == 128);
  CHECK(dst.to_float("w") == src.to_float("w"));  // these values are exact in FP16
  CHECK(std::equal(dst.at("norm").bytes.begin(), dst.at("norm").bytes.end(), keep.begin(), keep.end()));

  // Changing a type without a converter is an error, not garbage.
  std::ostringstream out2;
  CHECK_THROWS_AS(gguf::rewrite(src, src.kvs(), out2, [](const gguf::tensor_info&) { return 1u; }), mixprec::error);
}

TEST_CASE("GGUF writer refuses inconsistent input", "[io][gguf]") {
  std::ostringstream out;
  using mixprec::test::error_code_of;
  gguf::writer w(out, {});
  CHECK(error_code_of([&] { w.add_tensor(std::string(64, 'n'), 0, {1}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { w.add_tensor("u", 5, {32}); }) == errc::unsupported);
  CHECK(error_code_of([&] { w.add_tensor("r", 2, {48}); }) == errc::invalid_argument);  // not a multiple of 32
  CHECK(error_code_of([&] { w.add_tensor("d", 0, {1, 1, 1, 1, 1}); }) == errc::invalid_argument);
  CHECK(w.add_tensor("ok", 0, {2}) == 8);
  CHECK(error_code_of([&] { w.add_tensor("ok", 0, {2}); }) == errc::invalid_argument);
  w.write_header();
  CHECK(error_code_of([&] { w.write_tensor_data(std::vector<std::byte>(7)); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { w.finish(); }) == errc::invalid_argument);
  w.write_tensor_data(std::vector<std::byte>(8));
  CHECK(error_code_of([&] { w.write_tensor_data(std::vector<std::byte>(8)); }) == errc::invalid_argument);
  w.finish();

  std::ostringstream o2;
  const gguf::metadata bad = {{"a", gguf::value(gguf::array{gguf::value_type::u8, {gguf::value(std::uint32_t{1})}})}};
  gguf::writer w2(o2, bad);
  CHECK(error_code_of([&] { w2.write_header(); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { gguf::writer(o2, {{"a", gguf::value(true)}, {"a", gguf::value(false)}}); }) ==
        errc::invalid_argument);
}

TEST_CASE("GGUF rejects corrupt files with typed errors", "[io][gguf]") {
  // A valid base file: every strict prefix of it must be refused.
  const std::string good = write_to_string(all_types(), {{"a", 0, {4}, std::vector<std::byte>(16), {}},
                                                         {"b", 8, {32, 2}, std::vector<std::byte>(68), {}}});
  const gguf::file whole = parse(to_bytes(good));
  REQUIRE(whole.tensors().size() == 2);
  // (The padding after the last tensor is optional: the file ends with its last byte of data.)
  const std::size_t end = whole.data_offset() + whole.at("b").offset + whole.at("b").size;
  CHECK(end == whole.data_offset() + 32 + 68);
  CHECK(parse(to_bytes(good.substr(0, end))).tensors().size() == 2);
  for (std::size_t n = 0; n < end; ++n) {
    INFO("prefix " << n);
    const auto e = failure(to_bytes(good.substr(0, n)));
    REQUIRE(e);
    CHECK(e->code() == errc::parse_error);
  }

  auto one_tensor = [](std::uint32_t n_dims, std::vector<std::uint64_t> dims, std::uint32_t type, std::uint64_t offset,
                       std::size_t data_bytes) {
    builder f;
    f.header(1, 0).str("t").put(n_dims);
    for (auto d : dims) f.put(d);
    f.put(type).put(offset).pad(32);
    f.b.resize(f.b.size() + data_bytes);
    return f.b;
  };
  CHECK(parse(one_tensor(1, {8}, 0, 0, 32)).at("t").size == 32);  // the template is valid

  {
    auto b = one_tensor(1, {8}, 0, 0, 32);
    b[0] = std::byte{'X'};
    parse_error(b, "magic");
  }
  parse_error(builder{}.header(0, 0, 1).b, "version 1");
  parse_error(builder{}.header(0, 0, 4).b, "version 4");
  parse_error(builder{}.header(0, 0, 0x03000000u).b, "big-endian");
  parse_error(builder{}.header(std::uint64_t{1} << 60, 0).b, "tensor infos cannot fit");
  parse_error(builder{}.header(0, 1000).str("k").put<std::uint32_t>(0).put<std::uint8_t>(1).b, "metadata entries cannot fit");
  parse_error(builder{}.header(0, 1).put<std::uint64_t>(1000).put<std::uint64_t>(0).b, "past the end");
  parse_error(builder{}.header(0, 1).str("k").put<std::uint32_t>(8).put<std::uint64_t>(1 << 20).b, "past the end");
  parse_error(builder{}.header(0, 1).str("k").put<std::uint32_t>(13).put<std::uint64_t>(0).b, "unknown value type 13");
  parse_error(builder{}.header(0, 1).str("k").put<std::uint32_t>(7).put<std::uint8_t>(2).b, "not 0 or 1");
  parse_error(builder{}.header(0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(10).put<std::uint64_t>(1u << 30)
                  .put<std::uint64_t>(0).b,
              "cannot fit");
  parse_error(builder{}.header(0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(14).put<std::uint64_t>(0).b,
              "unknown array element type");
  {
    builder f;
    f.header(0, 1).str("deep").put<std::uint32_t>(9);
    for (int i = 0; i < 20; ++i) f.put<std::uint32_t>(9).put<std::uint64_t>(1);
    f.put<std::uint32_t>(0).put<std::uint64_t>(0);
    parse_error(f.b, "nested deeper");
  }
  parse_error(builder{}.header(0, 2).str("k").put<std::uint32_t>(0).put<std::uint8_t>(1).str("k").put<std::uint32_t>(0)
                  .put<std::uint8_t>(1).b,
              "duplicate metadata key");
  parse_error(builder{}.header(0, 1).str("general.alignment").put<std::uint32_t>(10).put<std::uint64_t>(64).b,
              "not u32");
  parse_error(builder{}.header(0, 1).str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(24).b,
              "power of two");
  parse_error(builder{}.header(0, 1).str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(0).b,
              "power of two");
  parse_error(builder{}.header(0, 1).str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(1u << 30).b,
              "power of two up to");

  parse_error(one_tensor(5, {1, 1, 1, 1, 1}, 0, 0, 4), "dimensions");
  parse_error(one_tensor(0, {}, 0, 0, 4), "dimensions");
  parse_error(one_tensor(2, {std::uint64_t{1} << 40, std::uint64_t{1} << 40}, 0, 0, 0), "overflows");
  parse_error(one_tensor(1, {std::uint64_t{1} << 63}, 0, 0, 0), "INT64_MAX");
  parse_error(one_tensor(1, {std::uint64_t{1} << 62}, 0, 0, 0), "byte size overflows");
  parse_error(one_tensor(1, {16}, 2, 0, 64), "block size");
  parse_error(one_tensor(1, {8}, 0, 16, 64), "multiple of the alignment");
  parse_error(one_tensor(1, {8}, 0, 32, 32), "past the end");
  parse_error(one_tensor(1, {8}, 0, 0, 31), "past the end");
  parse_error(one_tensor(1, {8}, 0, std::numeric_limits<std::uint64_t>::max() - 31, 32), "past the end");
  {
    const auto e = failure(one_tensor(1, {32}, 4, 0, 64));
    REQUIRE(e);
    CHECK(e->code() == errc::unsupported);
    CHECK_THAT(e->what(), Catch::Matchers::Contains("'t'") && Catch::Matchers::Contains("type 4"));
  }
  {
    builder f;  // two tensors sharing bytes
    f.header(2, 0);
    f.str("a").put<std::uint32_t>(1).put<std::uint64_t>(16).put<std::uint32_t>(0).put<std::uint64_t>(0);
    f.str("b").put<std::uint32_t>(1).put<std::uint64_t>(8).put<std::uint32_t>(0).put<std::uint64_t>(32);
    f.pad(32);
    f.b.resize(f.b.size() + 96);
    parse_error(f.b, "overlap");
  }
  {
    builder f;
    f.header(2, 0);
    for (int i = 0; i < 2; ++i)
      f.str("same").put<std::uint32_t>(1).put<std::uint64_t>(1).put<std::uint32_t>(0).put<std::uint64_t>(32u * unsigned(i));
    f.pad(32);
    f.b.resize(f.b.size() + 64);
    parse_error(f.b, "duplicate tensor name");
  }
}
