// Quantizes a seeded Gaussian weight matrix with every format and prints size and error for each.
//   quantize_matrix [rows] [cols] [spec ...]     e.g. quantize_matrix 4096 4096 int4/g64/asym/mse/s16
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <mixprec/mixprec.hpp>

int main(int argc, char** argv) try {
  const mixprec::index_t rows = argc > 1 ? std::stol(argv[1]) : 1024;
  const mixprec::index_t cols = argc > 2 ? std::stol(argv[2]) : 1024;
  std::vector<std::string> specs(argv + std::min(argc, 3), argv + argc);
  if (specs.empty())
    specs = {"fp32", "bf16", "fp16", "int8/channel/sym/minmax/s32", "fp8_e4m3/channel/sym/minmax/s32",
             "int4/g32/sym/minmax/s16", "int4/g32/sym/mse/s16", "int4/g128/asym/mse/s16",
             "int4/channel/sym/mse/s32", "int2/g32/sym/mse/s16"};

  std::mt19937 gen(2024);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  mixprec::row_matrix w(rows, cols);
  for (mixprec::index_t i = 0; i < w.size(); ++i) w.data()[i] = dist(gen);
  const double signal = w.cast<double>().squaredNorm();

  std::printf("mixprec %s: a %ldx%ld N(0, 0.02^2) matrix (%.1f MiB as FP32)\n\n", mixprec::version_string,
              static_cast<long>(rows), static_cast<long>(cols), static_cast<double>(w.size()) * 4.0 / (1 << 20));
  std::printf("| %-34s | %11s | %12s | %9s | %13s |\n", "format", "bits/weight", "bytes", "SQNR (dB)", "max |error|");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(13, '-').c_str(),
              std::string(14, '-').c_str(), std::string(11, '-').c_str(), std::string(15, '-').c_str());
  for (const auto& text : specs) {
    const mixprec::quant_spec spec = mixprec::parse_spec(text);
    const mixprec::quantized_tensor q = mixprec::quantize(w, spec, "example");
    const mixprec::row_matrix back = mixprec::dequantize(q);
    const double noise = (w - back).cast<double>().squaredNorm();
    const double sqnr = noise == 0.0 ? INFINITY : 10.0 * std::log10(signal / noise);
    std::printf("| %-34s | %11.3f | %12zu | %9.2f | %13.3g |\n", mixprec::to_string(spec).c_str(),
                q.bits_per_weight(), q.bytes(), sqnr, static_cast<double>((w - back).cwiseAbs().maxCoeff()));
  }
  return 0;
} catch (const mixprec::error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
