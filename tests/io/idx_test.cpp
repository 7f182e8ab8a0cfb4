// IDX reader: well-formed, corrupt and compressed inputs, and the real Fashion-MNIST files if present.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <zlib.h>

#include "mixprec/io/idx.hpp"
#include "support/errors.hpp"

namespace {
std::vector<std::uint8_t> make_idx(std::vector<std::uint32_t> dims, std::vector<std::uint8_t> data) {
  std::vector<std::uint8_t> b = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
std::string write_gz(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return path;
}
}  // namespace

TEST_CASE("IDX parses images and labels and rejects corrupt input", "[io][idx]") {
  const auto img = make_idx({2, 2, 3}, {0, 255, 51, 0, 0, 0, 1, 2, 3, 4, 5, 6});
  const auto a = mixprec::idx::parse(img);
  CHECK(a.dims == std::vector<std::uint32_t>{2, 2, 3});
  CHECK(a.data[1] == 255);
  auto code_of = [](std::vector<std::uint8_t> b) { return mixprec::test::error_code_of([&] { (void)mixprec::idx::parse(b, "t"); }); };
  CHECK(code_of({0, 0}) == mixprec::errc::parse_error);
  auto bad = img;
  bad[0] = 1;
  CHECK(code_of(bad) == mixprec::errc::parse_error);
  bad = img;
  bad[2] = 0x0D;  // float data
  CHECK(code_of(bad) == mixprec::errc::parse_error);
  bad = img;
  bad.pop_back();  // truncated
  CHECK_THROWS_WITH(mixprec::idx::parse(bad, "t"), Catch::Contains("expected 12 data bytes"));
  CHECK(code_of(make_idx({0, 3}, {})) == mixprec::errc::parse_error);
  CHECK(code_of(make_idx({0xFFFFFFFF, 0xFFFFFFFF}, {})) == mixprec::errc::parse_error);
  // 2^17 x 2^17 x 2^30 elements: 2^64, which wraps to 0 in 64-bit arithmetic and would match an empty
  // data section.
  CHECK(code_of(make_idx({1u << 17, 1u << 17, 1u << 30}, {})) == mixprec::errc::parse_error);
  bad = img;
  bad[3] = 9;
  CHECK(code_of(bad) == mixprec::errc::parse_error);

  // Through gzip: images scaled to [0, 1], labels range-checked.
  const std::string ip = write_gz(img, "mixprec_idx_img.gz");
  const auto m = mixprec::idx::load_images(ip);
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 6);
  CHECK(m(0, 1) == 1.0f);
  CHECK(m(0, 2) == Approx(0.2f));
  const std::string lp = write_gz(make_idx({3}, {1, 9, 0}), "mixprec_idx_lab.gz");
  CHECK(mixprec::idx::load_labels(lp) == std::vector<std::uint8_t>{1, 9, 0});
  CHECK_THROWS_WITH(mixprec::idx::load_labels(lp, 5), Catch::Contains("label 9 at index 1"));
  CHECK_THROWS_AS(mixprec::idx::load_images(lp), mixprec::error);  // labels are not images
  // A truncated gzip file is an error, not a short read.
  {
    std::ifstream in(ip, std::ios::binary);
    std::vector<char> z((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(ip, std::ios::binary).write(z.data(), static_cast<std::streamsize>(z.size() / 2));
  }
  CHECK_THROWS_AS(mixprec::idx::load_images(ip), mixprec::error);
  CHECK_THROWS_AS(mixprec::idx::read_file("/nonexistent.gz"), mixprec::error);
  std::filesystem::remove(ip);
  std::filesystem::remove(lp);
}

TEST_CASE("the real Fashion-MNIST files load", "[io][idx][fashion]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!std::filesystem::exists(dir + "t10k-labels-idx1-ubyte.gz")) {
    WARN("skipped: install Debian's dataset-fashion-mnist");
    return;
  }
  const auto labels = mixprec::idx::load_labels(dir + "t10k-labels-idx1-ubyte.gz");
  CHECK(labels.size() == 10000);
  const auto images = mixprec::idx::load_images(dir + "t10k-images-idx3-ubyte.gz");
  CHECK(images.rows() == 10000);
  CHECK(images.cols() == 784);
  CHECK(images.maxCoeff() <= 1.0f);
  CHECK(mixprec::idx::load_labels(dir + "train-labels-idx1-ubyte.gz").size() == 60000);
}
