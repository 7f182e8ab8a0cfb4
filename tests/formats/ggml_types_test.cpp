// formats/ggml_types.hpp: the one table of ggml type codes against ggml's own numbers (written out
// here independently of the header, from ggml's `enum ggml_type` in ggml/include/ggml.h, `type_traits`
// in ggml/src/ggml.c and the block structs of ggml/src/ggml-common.h), the types mixprec implements
// against the ggml_type enum, and the types it only knows refused by name where decoding is needed.
#include <catch2/catch.hpp>

#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "support/errors.hpp"

namespace ggml = mixprec::ggml;
using mixprec::errc;
using mixprec::ggml_type;

namespace {

struct expected_type {
  std::uint32_t code;
  std::string_view name;
  std::uint32_t block, bytes;  // ggml's blck_size and type_size (0 and 0 for a removed code)
  char kind;                   // 'I' implemented by mixprec, 'K' known only, 'R' removed from ggml
};

// ggml.h enum ggml_type (GGML_TYPE_COUNT = 43) with ggml.c's type_name, blck_size and type_size; the
// byte counts are ggml-common.h's static_asserts worked out (QK_K = 256).
constexpr expected_type ggml_types[] = {
    {0, "f32", 1, 4, 'I'},          {1, "f16", 1, 2, 'I'},
    {2, "q4_0", 32, 2 + 16, 'I'},   {3, "q4_1", 32, 4 + 16, 'I'},
    {4, "q4_2", 0, 0, 'R'},         {5, "q4_3", 0, 0, 'R'},
    {6, "q5_0", 32, 2 + 4 + 16, 'I'}, {7, "q5_1", 32, 4 + 4 + 16, 'I'},
    {8, "q8_0", 32, 2 + 32, 'I'},   {9, "q8_1", 32, 4 + 32, 'K'},
    {10, "q2_K", 256, 4 + 16 + 64, 'I'},  {11, "q3_K", 256, 2 + 64 + 32 + 12, 'I'},
    {12, "q4_K", 256, 4 + 12 + 128, 'I'}, {13, "q5_K", 256, 4 + 12 + 128 + 32, 'I'},
    {14, "q6_K", 256, 2 + 16 + 192, 'I'}, {15, "q8_K", 256, 4 + 256 + 32, 'K'},
    {16, "iq2_xxs", 256, 2 + 64, 'K'},    {17, "iq2_xs", 256, 2 + 64 + 8, 'K'},
    {18, "iq3_xxs", 256, 2 + 96, 'K'},    {19, "iq1_s", 256, 2 + 32 + 16, 'K'},
    {20, "iq4_nl", 32, 2 + 16, 'I'},      {21, "iq3_s", 256, 2 + 13 * 8 + 4, 'K'},
    {22, "iq2_s", 256, 2 + 64 + 16, 'K'}, {23, "iq4_xs", 256, 2 + 2 + 4 + 128, 'I'},
    {24, "i8", 1, 1, 'K'},   {25, "i16", 1, 2, 'K'}, {26, "i32", 1, 4, 'K'}, {27, "i64", 1, 8, 'K'},
    {28, "f64", 1, 8, 'K'},  {29, "iq1_m", 256, 32 + 16 + 8, 'K'},
    {30, "bf16", 1, 2, 'I'},
    {31, "q4_0_4_4", 0, 0, 'R'},   {32, "q4_0_4_8", 0, 0, 'R'},   {33, "q4_0_8_8", 0, 0, 'R'},
    {34, "tq1_0", 256, 2 + 4 + 48, 'K'},  {35, "tq2_0", 256, 2 + 64, 'K'},
    {36, "iq4_nl_4_4", 0, 0, 'R'}, {37, "iq4_nl_4_8", 0, 0, 'R'}, {38, "iq4_nl_8_8", 0, 0, 'R'},
    {39, "mxfp4", 32, 1 + 16, 'K'},       // E8M0 exponent + 32 E2M1 nibbles: gpt-oss's experts
    {40, "nvfp4", 64, 4 + 32, 'K'},       // 4 UE4M3 scales + 64 E2M1 nibbles
    {41, "q1_0", 128, 2 + 16, 'K'},       {42, "q2_0", 64, 2 + 16, 'K'},
};

}  // namespace

TEST_CASE("ggml type table: every code ggml defines, with ggml's names, block sizes and type sizes", "[formats][ggml_types]") {
  REQUIRE(ggml::type_count == 43);
  REQUIRE(sizeof ggml::type_table / sizeof ggml::type_table[0] == std::size(ggml_types));
  for (const expected_type& e : ggml_types) {
    INFO("code " << e.code << " " << e.name);
    const ggml::type_info* t = ggml::find_type(e.code);
    REQUIRE(t != nullptr);
    CHECK(t->code == e.code);
    CHECK(t->name == e.name);
    CHECK(t->block_size == e.block);
    CHECK(t->type_size == e.bytes);
    CHECK(t->implemented() == (e.kind == 'I'));
    CHECK(t->removed() == (e.kind == 'R'));
    CHECK(mixprec::is_supported_ggml_type(e.code) == (e.kind == 'I'));
  }
  for (std::uint32_t unknown : {43u, 44u, 143u, 1000u, 0xFFFFFFFFu}) CHECK(ggml::find_type(unknown) == nullptr);
}

TEST_CASE("ggml type table: the implemented types are the ggml_type enum's, sized by the table", "[formats][ggml_types]") {
  std::vector<std::uint32_t> flagged;
  for (const ggml::type_info& t : ggml::type_table)
    if (t.implemented()) flagged.push_back(t.code);
  std::vector<std::uint32_t> listed;
  for (ggml_type t : mixprec::all_ggml_types) listed.push_back(static_cast<std::uint32_t>(t));
  CHECK(flagged == listed);
  for (ggml_type t : mixprec::all_ggml_types) {
    const ggml::type_info* info = ggml::find_type(static_cast<std::uint32_t>(t));
    CHECK(mixprec::to_string(t) == info->name);
    CHECK(ggml::block_size(t) == static_cast<int>(info->block_size));
    CHECK(ggml::type_size(t) == static_cast<int>(info->type_size));
  }
}

TEST_CASE("ggml types mixprec only knows: listed by name, refused by name where decoding is needed", "[formats][ggml_types]") {
  // The types a GGUF may hold that mixprec carries but does not decode.
  std::vector<std::string> known_only;
  for (const ggml::type_info& t : ggml::type_table)
    if (!t.implemented() && !t.removed()) known_only.emplace_back(t.name);
  CHECK(known_only == std::vector<std::string>{"q8_1", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq3_s", "iq2_s", "i8", "i16",
                                               "i32", "i64", "f64", "iq1_m", "tq1_0", "tq2_0", "mxfp4", "nvfp4", "q1_0", "q2_0"});

  // MXFP4: a name through the enum too, but no codec: traits, row sizes and decoding refuse it by name.
  const auto mxfp4 = static_cast<ggml_type>(39);
  CHECK(mixprec::to_string(mxfp4) == "mxfp4");
  const auto e = mixprec::test::error_of([&] { (void)ggml::traits(mxfp4); });
  REQUIRE(e);
  CHECK(e->code() == errc::unsupported);
  CHECK_THAT(e->what(), Catch::Contains("mxfp4") && Catch::Contains("not implemented"));
  CHECK(mixprec::test::error_code_of([&] { (void)ggml::row_bytes(mxfp4, 64); }) == errc::unsupported);
  const std::vector<std::byte> block(34);
  CHECK(mixprec::test::error_code_of([&] { (void)ggml::dequantize(mxfp4, block, 1, 64, "blk.0.ffn_up_exps.weight"); }) ==
        errc::unsupported);
  // A type the user names must be one mixprec implements.
  CHECK(mixprec::test::error_code_of([] { (void)mixprec::parse_ggml_type("mxfp4"); }) == errc::invalid_argument);
  // A removed code has a name but no sizes.
  const auto e31 = mixprec::test::error_of([] { (void)ggml::traits(static_cast<ggml_type>(31)); });
  REQUIRE(e31);
  CHECK(e31->code() == errc::unsupported);
  CHECK_THAT(e31->what(), Catch::Contains("q4_0_4_4"));
}
