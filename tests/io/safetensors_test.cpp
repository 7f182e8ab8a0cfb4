// safetensors: hand-built files with known bytes, writer round trips, mapping from disk, and every
// class of corrupt header the reader must refuse with a typed error.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <unistd.h>

#include "mixprec/io/safetensors.hpp"
#include "support/errors.hpp"

namespace st = mixprec::safetensors;
using mixprec::errc;

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<unsigned> v) {
  std::vector<std::byte> b;
  for (unsigned x : v) b.push_back(static_cast<std::byte>(x));
  return b;
}

// A safetensors file built by hand: length prefix, the JSON text as given padded with spaces to a
// multiple of 8 (as writers do, so that data offsets keep their alignment), then `data`.
std::vector<std::byte> raw_file(std::string json, const std::vector<std::byte>& data) {
  json.append((8 - json.size() % 8) % 8, ' ');
  std::vector<std::byte> b(8);
  const std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
  for (char c : json) b.push_back(static_cast<std::byte>(c));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

st::file parse(std::vector<std::byte> b) { return st::file::parse(mixprec::mapped_file::from_bytes(std::move(b), "t")); }

// The error parsing `b` throws, or nullopt when it parses.
std::optional<mixprec::error> failure(std::vector<std::byte> b) {
  return mixprec::test::error_of([&] { (void)parse(std::move(b)); });
}

std::string temp_path(const std::string& stem) {
  static int counter = 0;
  return (std::filesystem::temp_directory_path() /
          ("mixprec_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + stem))
      .string();
}

}  // namespace

TEST_CASE("safetensors reads a hand-built file with F32, F16 and BF16 tensors", "[io][safetensors]") {
  // F32 [2,2] = 1.5, -2, 3.25, 0 (IEEE bits written out); F16 [3] = 1, -2, 65504; BF16 [1,2] = 1, 3.140625.
  std::vector<std::byte> data = bytes_of({0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x50, 0x40,
                                          0x00, 0x00, 0x00, 0x00,                          // F32, 16 bytes
                                          0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B,              // F16, 6 bytes
                                          0x80, 0x3F, 0x49, 0x40});                        // BF16, 4 bytes
  const std::string json =
      R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},)"
      R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[22,26]},)"
      R"("__metadata__":{"format":"pt","note":"h\u00e9"}}   )";  // trailing spaces are allowed padding
  const st::file f = parse(raw_file(json, data));
  REQUIRE(f.tensors().size() == 3);
  CHECK(f.tensors()[0].name == "w");  // sorted by offset
  CHECK(f.tensors()[1].name == "h");
  CHECK(f.tensors()[2].name == "b");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "h\xC3\xA9");
  CHECK(f.metadata().size() == 2);

  const mixprec::row_matrix w = f.to_float("w");
  REQUIRE(w.rows() == 2);
  REQUIRE(w.cols() == 2);
  CHECK(w(0, 0) == 1.5f);
  CHECK(w(0, 1) == -2.0f);
  CHECK(w(1, 0) == 3.25f);
  CHECK(w(1, 1) == 0.0f);
  const mixprec::row_matrix h = f.to_float("h");
  REQUIRE(h.rows() == 1);
  REQUIRE(h.cols() == 3);
  CHECK(h(0, 0) == 1.0f);
  CHECK(h(0, 1) == -2.0f);
  CHECK(h(0, 2) == 65504.0f);
  const mixprec::row_matrix b = f.to_float("b");
  REQUIRE(b.cols() == 2);
  CHECK(b(0, 0) == 1.0f);
  CHECK(b(0, 1) == 3.140625f);

  // The F32 tensor is mapped in place: its address is inside the file's bytes (8 + header + 0).
  const auto m = f.as_matrix_f32("w");
  CHECK(reinterpret_cast<const std::byte*>(m.data()) == f.at("w").bytes.data());
  CHECK(m(1, 0) == 3.25f);
  CHECK(f.at("h").begin == 16);
  CHECK(f.at("h").end == 22);

  CHECK_THROWS_MATCHES(f.as_matrix_f32("h"), mixprec::error,
                       Catch::Matchers::Predicate<mixprec::error>([](const auto& e) { return e.code() == errc::unsupported; }));
  CHECK(f.find("nope") == nullptr);
  CHECK_THROWS_AS(f.at("nope"), mixprec::error);
}

TEST_CASE("safetensors matrix view of ranks 0, 1, 3 and an empty 2-D shape", "[io][safetensors]") {
  std::vector<float> v(2 * 3 * 4 + 1 + 5);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f;
  std::vector<std::byte> data(v.size() * 4);
  std::memcpy(data.data(), v.data(), data.size());
  const std::string json = R"({"t3":{"dtype":"F32","shape":[2,3,4],"data_offsets":[0,96]},)"
                           R"("s":{"dtype":"F32","shape":[],"data_offsets":[96,100]},)"
                           R"("v":{"dtype":"F32","shape":[5],"data_offsets":[100,120]},)"
                           R"("e":{"dtype":"F32","shape":[0,7],"data_offsets":[120,120]}})";
  const st::file f = parse(raw_file(json, data));
  const auto t3 = f.as_matrix_f32("t3");
  CHECK(t3.rows() == 2);
  CHECK(t3.cols() == 12);
  CHECK(t3(1, 5) == v[12 + 5]);
  const auto s = f.to_float("s");
  CHECK(s.rows() == 1);
  CHECK(s.cols() == 1);
  CHECK(s(0, 0) == v[24]);
  const auto vv = f.to_float("v");
  CHECK(vv.rows() == 1);
  CHECK(vv.cols() == 5);
  CHECK(vv(0, 4) == v[29]);
  const auto e = f.to_float("e");
  CHECK(e.rows() == 0);
  CHECK(e.cols() == 7);
}

TEST_CASE("safetensors writer round-trips F32, F16 and BF16 through a file on disk", "[io][safetensors]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  mixprec::row_matrix a(5, 7), b(3, 33), c(1, 9);
  for (auto* m : {&a, &b, &c})
    for (mixprec::index_t i = 0; i < m->size(); ++i) m->data()[i] = nd(rng);
  c(0, 0) = 1e6f;  // BF16 keeps the range, loses precision
  const auto ab = st::encode(a, st::dtype::f32);
  const auto bb = st::encode(b, st::dtype::f16);
  const auto cb = st::encode(c, st::dtype::bf16);
  const std::vector<st::tensor_view> ts = {{"layer.0.weight", st::dtype::f32, {5, 7}, ab},
                                           {"layer.0.half", st::dtype::f16, {3, 11, 3}, bb},
                                           {"bias", st::dtype::bf16, {9}, cb}};
  const std::string path = temp_path("rt.safetensors");
  st::write(path, ts, {{"format", "pt"}, {"who", "mixprec"}});

  const st::file f = st::file::open(path);
  CHECK(f.path() == path);
  REQUIRE(f.tensors().size() == 3);
  CHECK(f.metadata().at("who") == "mixprec");
  // Header padded to a multiple of 8: the first tensor's data is 8-aligned in the file.
  const std::uint64_t header_len = [&] {
    std::ifstream in(path, std::ios::binary);
    std::uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    return n;
  }();
  CHECK(header_len % 8 == 0);
  CHECK(std::filesystem::file_size(path) == 8 + header_len + ab.size() + bb.size() + cb.size());

  CHECK(f.at("layer.0.weight").shape == std::vector<std::uint64_t>{5, 7});
  CHECK(mixprec::row_matrix(f.as_matrix_f32("layer.0.weight")) == a);  // exact
  const auto hb = f.to_float("layer.0.half");
  REQUIRE(hb.rows() == 3);
  REQUIRE(hb.cols() == 33);
  for (mixprec::index_t i = 0; i < b.size(); ++i) {
    // FP16 round to nearest: relative error at most 2^-11 for normal values.
    CHECK(std::abs(hb.data()[i] - b.data()[i]) <= std::abs(b.data()[i]) * 0x1p-11f + 0x1p-25f);
  }
  const auto hc = f.to_float("bias");
  CHECK(hc(0, 0) == 999424.0f);  // 1e6 to BF16 (8 significant bits): 0x4974 -> 999424
  for (mixprec::index_t i = 1; i < c.size(); ++i)
    CHECK(std::abs(hc.data()[i] - c.data()[i]) <= std::abs(c.data()[i]) * 0x1p-8f);
  std::filesystem::remove(path);
}

TEST_CASE("safetensors F32 after an odd F16 tensor is not 4-byte aligned: view refused, copy works",
          "[io][safetensors]") {
  mixprec::row_matrix h(1, 3), w(2, 2);
  h << 1, 2, 3;
  w << 4, 5, 6, 7;
  const auto hb = st::encode(h, st::dtype::f16);
  const auto wb = st::encode(w, st::dtype::f32);
  std::ostringstream out;
  const std::vector<st::tensor_view> ts = {{"h", st::dtype::f16, {3}, hb}, {"w", st::dtype::f32, {2, 2}, wb}};
  st::write(out, ts);
  const std::string s = out.str();
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  const st::file f = parse(std::move(b));
  CHECK(f.at("w").begin == 6);
  CHECK_THROWS_AS(f.as_matrix_f32("w"), mixprec::error);
  CHECK(f.to_float("w") == w);
  CHECK(f.to_float("h") == h);
}

TEST_CASE("safetensors writer refuses bad tensors", "[io][safetensors]") {
  const auto b = bytes_of({0, 0, 0, 0});
  std::ostringstream out;
  CHECK_THROWS_AS(st::write(out, std::vector<st::tensor_view>{{"a", st::dtype::f32, {2}, b}}), mixprec::error);
  CHECK_THROWS_AS(st::write(out, std::vector<st::tensor_view>{{"a", st::dtype::f16, {2}, b}, {"a", st::dtype::f16, {2}, b}}),
                  mixprec::error);
  CHECK_THROWS_AS(st::write(out, std::vector<st::tensor_view>{{"__metadata__", st::dtype::f32, {1}, b}}), mixprec::error);
  CHECK_THROWS_AS(st::write("/nonexistent-dir/x.safetensors", std::vector<st::tensor_view>{}), mixprec::error);
}

TEST_CASE("safetensors rejects corrupt files with typed errors", "[io][safetensors]") {
  const auto data8 = bytes_of({0, 0, 0x80, 0x3F, 0, 0, 0, 0x40});  // two F32: 1, 2
  auto with = [&](const std::string& json) { return raw_file(json, data8); };
  auto parse_error = [](std::vector<std::byte> b, const std::string& needle) {
    const auto e = failure(std::move(b));
    REQUIRE(e);
    CHECK(e->code() == errc::parse_error);
    CHECK_THAT(e->what(), Catch::Matchers::Contains(needle));
  };
  // Sanity: the well-formed base case parses.
  CHECK(parse(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})")).at("x").count() == 2);

  parse_error(bytes_of({1, 2, 3}), "shorter than the 8-byte");
  {
    auto b = raw_file("{}", {});
    b.pop_back();  // header length 2, only 1 byte of header
    parse_error(b, "past the end");
  }
  {
    auto b = raw_file("{}", {});
    b[5] = std::byte{1};  // length 2^40 + 2
    parse_error(b, "limit");
  }
  {
    auto b = raw_file("{}", {});
    b[0] = std::byte{0x10};  // 16 > file
    parse_error(b, "past the end");
  }
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), "not valid JSON");
  parse_error(with("{\"x\xff\":1}"), "not valid JSON");                               // bad UTF-8 in a key
  parse_error(with("{\"__metadata__\":{\"k\":\"\xC3\x28\"}}"), "not valid JSON");     // bad UTF-8 sequence
  parse_error(with(R"([1,2])"), "not a JSON object");
  parse_error(with(R"({"x":{"shape":[2],"data_offsets":[0,8]}})"), "no \"dtype\"");
  parse_error(with(R"({"x":{"dtype":"F32","data_offsets":[0,8]}})"), "no \"shape\"");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2]}})"), "no \"data_offsets\"");
  parse_error(with(R"({"x":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})"), "not a string");
  parse_error(with(R"({"x":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})"), "not an array");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})"), "negative");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})"), "not an integer");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[[[[2]]]],"data_offsets":[0,8]}})"), "array, not a non-negative");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]}})"), "negative");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[-0,8]}})"), "data_offsets begin is -0");  // a float to serde_json
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2,-0],"data_offsets":[0,0]}})"), "shape entry is -0");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})"), "[begin, end]");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})"), "too large");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})"), "too large");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})"), "needs 12");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})"), "before begin");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"), "past the data buffer");
  parse_error(with(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("y":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}})"),
              "overlap");
  parse_error(with(R"({"__metadata__":{"k":1}})"), "not a string");
  parse_error(with(R"({"__metadata__":[1]})"), "not an object");
  parse_error(with(R"({"x":[1]})"), "not an object");

  const auto e = failure(with(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})"));
  REQUIRE(e);
  CHECK(e->code() == errc::unsupported);
  CHECK_THAT(e->what(), Catch::Matchers::Contains("'ids'") && Catch::Matchers::Contains("I64"));
}

namespace {

// The bytes st::write makes of `ts` and `meta`.
std::vector<std::byte> written(const std::vector<st::tensor_view>& ts, const std::map<std::string, std::string>& meta = {}) {
  std::ostringstream out;
  st::write(out, ts, meta);
  const std::string s = out.str();
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// b with the first occurrence of `from` (in the header: it comes first) overwritten by `to`, of the
// same length, so that the header length still holds.
std::vector<std::byte> overwritten(std::vector<std::byte> b, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  const std::string s(reinterpret_cast<const char*>(b.data()), b.size());
  const std::size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  std::memcpy(b.data() + at, to.data(), to.size());
  return b;
}

// The error parsing `b`, named `name`, throws; it must be a parse_error naming the file and `needle`.
void refused_naming(std::vector<std::byte> b, const std::string& name, const std::string& needle) {
  INFO(needle);
  const auto e = mixprec::test::error_of([&] { (void)st::file::parse(mixprec::mapped_file::from_bytes(std::move(b), name)); });
  REQUIRE(e);
  CHECK(e->code() == errc::parse_error);
  CHECK_THAT(e->what(), Catch::Matchers::Contains("'" + name + "'") && Catch::Matchers::Contains(needle));
}

}  // namespace

TEST_CASE("safetensors refuses a key given twice: tensor, __metadata__, field, metadata key", "[io][safetensors]") {
  mixprec::row_matrix a(1, 2), b(1, 2);
  a << 1, 2;
  b << 3, 4;
  const auto ab = st::encode(a, st::dtype::f32), bb = st::encode(b, st::dtype::f32);
  const auto good = written({{"a", st::dtype::f32, {2}, ab}, {"b", st::dtype::f32, {2}, bb}}, {{"format", "pt"}});
  REQUIRE(parse(good).tensors().size() == 2);

  // The users' report: one name at two offsets. nlohmann kept the last entry and showed one tensor
  // holding b's values; a reader keeping the first shows a's.
  refused_naming(overwritten(good, "\"b\":", "\"a\":"), "dup.safetensors", "tensor 'a' appears twice");
  // Twice with the same offsets too (nothing tells which of two entries a writer meant).
  {
    const std::string json = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    refused_naming(raw_file(json, std::vector<std::byte>(ab.begin(), ab.end())), "same.safetensors", "tensor 'x' appears twice");
  }
  // A name written with an escape is the same name.
  {
    const std::string json = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("\u0077":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
    refused_naming(raw_file(json, std::vector<std::byte>(ab.begin(), ab.end())), "esc.safetensors", "tensor 'w' appears twice");
  }
  // "__metadata__" twice: the reference's struct field refuses a duplicate.
  {
    const std::string json = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("__metadata__":{"format":"np"}})";
    refused_naming(raw_file(json, std::vector<std::byte>(ab.begin(), ab.end())), "meta.safetensors", "\"__metadata__\" appears twice");
  }
  // A metadata key twice.
  refused_naming(overwritten(written({{"a", st::dtype::f32, {2}, ab}}, {{"k1", "x"}, {"k2", "y"}}), "\"k2\"", "\"k1\""),
                 "mkey.safetensors", "__metadata__ has the key 'k1' twice");
  // A field twice in one tensor: which dtype, which bytes?
  refused_naming(overwritten(good, "\"shape\"", "\"dtype\""), "field.safetensors", "tensor 'a' has the field \"dtype\" twice");
  {
    const std::string json = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[8,16]}})";
    std::vector<std::byte> data(ab.begin(), ab.end());
    data.insert(data.end(), bb.begin(), bb.end());
    refused_naming(raw_file(json, data), "offs.safetensors", "tensor 'x' has the field \"data_offsets\" twice");
  }
}

TEST_CASE("safetensors tensors tile the data buffer: no hole, no trailing bytes, as the reference requires",
          "[io][safetensors]") {
  const auto data12 = bytes_of({0, 0, 0x80, 0x3F, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40});  // three F32: 1, 2, 3
  // Contiguous from 0 to the end of the file, in any order in the header: accepted.
  const st::file ok = parse(raw_file(R"({"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                                     R"("x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                     data12));
  CHECK(ok.tensors().size() == 2);
  // Zero-size tensors take no bytes and may sit at any boundary.
  CHECK(parse(raw_file(R"({"z":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                       R"("e":{"dtype":"F32","shape":[2,0],"data_offsets":[12,12]}})",
                       data12))
            .tensors()
            .size() == 3);

  // A hole between two tensors.
  refused_naming(raw_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                          data12),
                 "hole.safetensors", "tensor 'y' [8, 12) starts 4 bytes after tensor 'x' [0, 4) ends");
  // A hole before the first tensor.
  refused_naming(raw_file(R"({"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data12), "start.safetensors",
                 "the first tensor 'y' [4, 12) does not start at 0");
  // Bytes after the last tensor (a second payload, a polyglot file), from the writer's own output.
  mixprec::row_matrix w(2, 2);
  w << 1, 2, 3, 4;
  const auto wb = st::encode(w, st::dtype::f32);
  auto trailing = written({{"w", st::dtype::f32, {2, 2}, wb}});
  REQUIRE(parse(trailing).tensors().size() == 1);
  trailing.push_back(std::byte{0x42});
  refused_naming(trailing, "tail.safetensors", "1 bytes after tensor 'w' [0, 16) belong to no tensor");
  // ... and data after a header without tensors.
  refused_naming(raw_file("{}", data12), "none.safetensors", "12 bytes after the header belong to no tensor");
  // Data missing at the end is still "past the data buffer".
  auto short_file = written({{"w", st::dtype::f32, {2, 2}, wb}});
  short_file.pop_back();
  refused_naming(short_file, "short.safetensors", "past the data buffer");
}

TEST_CASE("safetensors header text: no raw NUL, no byte order mark, nesting within serde_json's 127 levels",
          "[io][safetensors]") {
  const auto data8 = bytes_of({0, 0, 0x80, 0x3F, 0, 0, 0, 0x40});
  const std::string x = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(parse(raw_file(x, data8)).tensors().size() == 1);
  // nlohmann's lexer takes a NUL for the end of the text: what follows was never read.
  refused_naming(raw_file(x + std::string(1, '\0') + R"({"y":{"dtype":"I64"}})", data8), "nul.safetensors", "NUL byte at offset " + std::to_string(x.size()));
  // nlohmann skips a byte order mark; serde_json does not.
  refused_naming(raw_file("\xEF\xBB\xBF" + x, data8), "bom.safetensors", "byte order mark");
  // An unknown field is ignored (as serde does), however nested, up to 127 levels in all: the header
  // object, the tensor's object and 125 arrays.
  auto nested = [&](std::size_t arrays) {
    return R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"note":)" + std::string(arrays, '[') +
           std::string(arrays, ']') + "}}";
  };
  CHECK(parse(raw_file(nested(125), data8)).tensors().size() == 1);
  refused_naming(raw_file(nested(126), data8), "deep.safetensors", "nested deeper than 127 levels");
}

TEST_CASE("mapped_file maps files, owns or borrows buffers, and names the path on failure", "[io][mapped_file]") {
  const std::string path = temp_path("bytes.bin");
  {
    std::ofstream out(path, std::ios::binary);
    out << "hello";
  }
  mixprec::mapped_file f(path);
  REQUIRE(f.size() == 5);
  CHECK(std::memcmp(f.data().data(), "hello", 5) == 0);
  mixprec::mapped_file g = std::move(f);  // the mapping moves with the object
  CHECK(g.size() == 5);
  CHECK(f.size() == 0);
  CHECK(static_cast<char>(g.data()[4]) == 'o');
  CHECK(g.path() == path);

  const std::string empty = temp_path("empty.bin");
  { std::ofstream out(empty, std::ios::binary); }
  CHECK(mixprec::mapped_file(empty).size() == 0);
  CHECK(mixprec::test::error_code_of([] { (void)parse(raw_file("", {})); }) == errc::parse_error);  // "" is not JSON

  const auto missing = mixprec::test::error_of([] { (void)mixprec::mapped_file("/nonexistent/x.bin"); });
  REQUIRE(missing);
  CHECK(missing->code() == errc::io_error);
  CHECK_THAT(missing->what(), Catch::Matchers::Contains("/nonexistent/x.bin"));
  CHECK(mixprec::test::error_code_of([] { (void)mixprec::mapped_file(std::filesystem::temp_directory_path().string()); }) ==
        errc::io_error);  // a directory is not mapped
  CHECK_THROWS_AS(st::file::open("/nonexistent/x.safetensors"), mixprec::error);

  auto owned = mixprec::mapped_file::from_bytes(bytes_of({1, 2, 3}));
  const auto* p = owned.data().data();
  mixprec::mapped_file moved(std::move(owned));
  CHECK(moved.data().data() == p);
  CHECK(moved.size() == 3);
  const auto src = bytes_of({9, 8});
  auto view = mixprec::mapped_file::borrow(src, "view");
  CHECK(view.data().data() == src.data());
  CHECK(view.path() == "view");
  std::filesystem::remove(path);
  std::filesystem::remove(empty);
}
