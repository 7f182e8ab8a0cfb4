// `mixprec quantize --tune` on the seeded synthetic model of support/tiny_llama.hpp: the file keeps the
// plan's types and bytes per tensor, changes codes, lowers the model's KL to full precision on streams
// neither the tuning nor its held-out check saw, and refuses bad requests before writing anything.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <span>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mixprec/detail/fnv1a.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"

namespace fs = std::filesystem;

namespace {

using mixprec::test::dir_with_model;
using mixprec::test::tool;
using mixprec::test::tool_captured;

// Mean KL(float || quantized) over every position of `streams`, both run by the library's engine.
double mean_kl(const std::string& reference, const std::string& quantized, const std::vector<std::vector<int>>& streams) {
  namespace mm = mixprec::models;
  const auto gr = mixprec::gguf::file::open(reference), gq = mixprec::gguf::file::open(quantized);
  const mm::llama_model mr = mm::load_gguf(gr), mq = mm::load_gguf(gq);
  mm::llama_engine er(mr), eq(mq);
  double sum = 0.0, n = 0.0;
  for (const auto& s : streams) {
    const mixprec::kl_reference ref(er.logits(s));
    sum += ref.per_row(eq.logits(s)).sum();
    n += static_cast<double>(s.size());
  }
  return sum / n;
}

}  // namespace

TEST_CASE("quantize --tune: the plan's types and sizes, other codes, a lower KL on unseen streams", "[cli][tune]") {
  const fs::path dir = dir_with_model("mixprec_tune");
  const std::string gguf = (dir / "a.gguf").string(), plan = (dir / "plan.json").string();
  const std::string plain = (dir / "plain.gguf").string(), tuned = (dir / "tuned.gguf").string();
  REQUIRE(tool({"plan", gguf, "--budget", "7", "--types", "q4_0,q4_1,q5_0,q8_0,f16", "-o", plan}) == 0);
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "-o", plain}) == 0);
  const auto run = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "-o", tuned});
  REQUIRE(run.code == 0);
  CHECK(run.out.find("| blk.0.attn_q.weight |") != std::string::npos);
  CHECK(run.out.find("token_embd") == std::string::npos);  // a lookup: not tuned
  // The cost: its parts add up, and the ratio is the whole over the calibration streams' pass.
  const auto cost = run.out.find("time: ");
  REQUIRE(cost != std::string::npos);
  double sampling = 0, pass = 0, tuning = 0, total = 0, ratio = 0, fp_pass = 0;
  REQUIRE(std::sscanf(run.out.c_str() + cost,
                      "time: %lf s sampling both sets of streams, %lf s running them (Gram matrices), %lf s tuning; %lf s in all, "
                      "%lfx the full-precision pass over the calibration streams (%lf s)",
                      &sampling, &pass, &tuning, &total, &ratio, &fp_pass) == 6);
  CHECK(std::abs(total - (sampling + pass + tuning)) <= 0.01 * total + 0.001);  // printed to 3 digits
  CHECK(fp_pass > 0);
  CHECK(fp_pass <= 1.01 * (sampling + pass));
  CHECK(std::abs(ratio - total / fp_pass) <= 0.05 * ratio + 0.06);

  const auto a = mixprec::gguf::file::open(plain), b = mixprec::gguf::file::open(tuned);
  REQUIRE(a.tensors().size() == b.tensors().size());
  int changed = 0;
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& ta = a.tensors()[i];
    const auto& tb = b.tensors()[i];
    INFO(ta.name);
    CHECK(ta.name == tb.name);
    CHECK(ta.type == tb.type);
    REQUIRE(ta.size == tb.size);
    changed += std::equal(ta.bytes.begin(), ta.bytes.end(), tb.bytes.begin()) ? 0 : 1;
  }
  CHECK(changed > 5);
  CHECK(fs::file_size(plain) == fs::file_size(tuned));

  // Streams of another seed than the tuning's (11) and its held-out check's (12).
  namespace mm = mixprec::models;
  const auto g = mixprec::gguf::file::open(gguf);
  const mm::llama_model m = mm::load_gguf(g);
  mm::llama_engine e(m);
  const auto streams = mm::sample_streams(e, {.streams = 8, .length = 32, .seed = 99, .first = mm::bos_of(g, m.config.vocab_size).id});
  const double kl_plain = mean_kl(gguf, plain, streams), kl_tuned = mean_kl(gguf, tuned, streams);
  INFO("KL untuned " << kl_plain << ", tuned " << kl_tuned);
  CHECK(kl_tuned < 0.9 * kl_plain);

  // The same request, the same bytes; threads do not change them.
  const std::string again = (dir / "again.gguf").string();
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "--threads", "1", "-o", again}) == 0);
  CHECK(mixprec::test::read_bytes(again) == mixprec::test::read_bytes(tuned));
}

TEST_CASE("quantize --tune-checkpoint: a stopped run resumes to the same bytes; another run's or a cut-off file is tuned again",
          "[cli][tune]") {
  const fs::path dir = dir_with_model("mixprec_tune_checkpoint");
  const std::string gguf = (dir / "a.gguf").string(), plan = (dir / "plan.json").string(), ck = (dir / "ck").string();
  REQUIRE(tool({"plan", gguf, "--budget", "7", "--types", "q4_0,q4_1,q5_0,q8_0,f16", "-o", plan}) == 0);
  const std::string direct = (dir / "direct.gguf").string(), first = (dir / "first.gguf").string();
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "-o", direct}) == 0);
  const auto fresh = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-checkpoint", ck, "-o", first});
  REQUIRE(fresh.code == 0);
  CHECK(fresh.out.find("(resumed)") == std::string::npos);
  CHECK(mixprec::test::read_bytes(first) == mixprec::test::read_bytes(direct));  // saving changes nothing
  std::vector<fs::path> saved;
  for (const auto& f : fs::directory_iterator(ck)) saved.push_back(f.path());
  std::sort(saved.begin(), saved.end());
  REQUIRE(saved.size() >= 3);

  // As if stopped: one tensor never saved, one cut off, one saved by a run with other rounds (its key).
  fs::remove(saved[0]);
  fs::resize_file(saved[1], fs::file_size(saved[1]) - 7);
  const std::string other = (dir / "other").string(), other_out = (dir / "other.gguf").string();
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-rounds", "0", "--tune-checkpoint", other, "-o", other_out}) == 0);
  fs::copy_file(fs::path(other) / saved[2].filename(), saved[2], fs::copy_options::overwrite_existing);

  const std::string second = (dir / "second.gguf").string();
  const auto resumed = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-checkpoint", ck, "-o", second});
  REQUIRE(resumed.code == 0);
  CHECK(mixprec::test::read_bytes(second) == mixprec::test::read_bytes(direct));
  CHECK(resumed.out.find(std::to_string(saved.size() - 3) + " of " + std::to_string(saved.size()) + " tensors resumed") != std::string::npos);
  CHECK(resumed.err.find("is cut off") != std::string::npos);
  CHECK(resumed.err.find("is not this run's tuning") != std::string::npos);
  std::size_t now = 0;
  for ([[maybe_unused]] const auto& f : fs::directory_iterator(ck)) ++now;
  CHECK(now == saved.size());  // the three are saved again

  // What is resumed is the saved bytes: one code byte of blk.0.attn_q.weight changed, with its checksum.
  fs::path q;
  for (const auto& f : fs::directory_iterator(ck))
    if (f.path().filename().string().starts_with("blk.0.attn_q.weight-")) q = f.path();
  REQUIRE(!q.empty());
  const std::vector<char> raw = mixprec::test::read_bytes(q);
  std::string file(raw.begin(), raw.end());
  const auto eol = file.find('\n');
  REQUIRE(eol != std::string::npos);
  std::string payload = file.substr(eol + 1);
  REQUIRE(payload.size() > 2);
  payload[2] = static_cast<char>(payload[2] ^ 0x01);  // past the block's first FP16 scale: a code, or the low bits of a min
  std::string header = file.substr(0, eol);
  header = header.substr(0, header.rfind(' ') + 1) + mixprec::detail::hex16(mixprec::detail::fnv1a(std::as_bytes(std::span(payload))));
  std::ofstream(q, std::ios::binary) << header << '\n' << payload;
  const std::string third = (dir / "third.gguf").string();
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-checkpoint", ck, "-o", third}) == 0);
  const auto g3 = mixprec::gguf::file::open(third);
  bool found = false;
  for (const auto& t : g3.tensors())
    if (t.name == "blk.0.attn_q.weight") {
      found = true;
      CHECK(std::string(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size()) == payload);
    }
  CHECK(found);

  // Other streams (another --tune-seed): nothing is this run's.
  const auto reseeded = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-seed", "5", "--tune-checkpoint", ck, "-o",
                                            (dir / "fourth.gguf").string()});
  REQUIRE(reseeded.code == 0);
  CHECK(reseeded.out.find("(resumed)") == std::string::npos);
}

TEST_CASE("quantize --tune-text: streams cut from a text, alternately tuned on and checked on", "[cli][tune]") {
  const fs::path dir = dir_with_model("mixprec_tune_text");
  const std::string gguf = (dir / "a.gguf").string(), plan = (dir / "plan.json").string(), text = (dir / "text.txt").string();
  REQUIRE(tool({"plan", gguf, "--budget", "7", "--types", "q4_0,q4_1,q5_0,q8_0,f16", "-o", plan}) == 0);
  {
    std::ofstream f(text);
    for (int k = 0; k < 40; ++k) f << "Once upon a time a little fox found " << k << " red apples under the old tree, and she shared them.\n";
  }
  const std::string tuned = (dir / "tuned.gguf").string(), sampled = (dir / "sampled.gguf").string();
  const auto run = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-text", text, "-o", tuned});
  REQUIRE(run.code == 0);
  CHECK(run.out.find("| blk.0.attn_q.weight |") != std::string::npos);
  CHECK(run.err.find("16 streams from '" + text + "': 8 to tune on, 8 to check on") != std::string::npos);
  const auto by_sampling = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "-o", sampled});
  REQUIRE(by_sampling.code == 0);
  CHECK(mixprec::test::read_bytes(tuned) != mixprec::test::read_bytes(sampled));  // other streams, other codes
  // The held-out check ran on the text too: the untuned bytes' held-out error differs from the sampled run's.
  const auto row_of = [](const std::string& out) {  // the row's third cell: the untuned bytes' held-out error
    const auto at = out.find("| blk.0.attn_q.weight |");
    if (at == std::string::npos) return std::string();
    std::size_t cell = at;
    for (int k = 0; k < 2 && cell != std::string::npos; ++k) cell = out.find('|', cell + 1);  // past the name and the type
    return cell == std::string::npos ? std::string() : out.substr(cell, out.find('|', cell + 1) - cell);
  };
  REQUIRE(!row_of(run.out).empty());
  CHECK(row_of(run.out) != row_of(by_sampling.out));
  CHECK(run.out.find("s reading both sets of streams") != std::string::npos);

  // Too little text for one stream to tune on and one to check on; a seed where nothing is sampled.
  const std::string short_text = (dir / "short.txt").string(), out = (dir / "out.gguf").string();
  std::ofstream(short_text) << "Once upon a time.\n";
  const auto too_short = tool_captured(dir, {"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-text", short_text, "-o", out});
  CHECK(too_short.code == 2);
  CHECK(too_short.err.find("gives no stream of 32 tokens") != std::string::npos);
  const std::string no_tokens = (dir / "none.txt").string();
  std::ofstream(no_tokens) << "# no streams\n";
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-tokens", no_tokens, "-o", out}) == 2);
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-text", text, "--tune-seed", "3", "-o", out}) == 2);
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("quantize --tune refuses a bad request with exit 2 and writes nothing", "[cli][tune]") {
  const fs::path dir = dir_with_model("mixprec_tune_refusals");
  const std::string gguf = (dir / "a.gguf").string(), plan = (dir / "plan.json").string(), out = (dir / "out.gguf").string();
  REQUIRE(tool({"plan", gguf, "--budget", "7", "--types", "q4_0,q8_0,f16", "-o", plan}) == 0);
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune", "0:32", "-o", out}) == 2);
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune", "8:1", "-o", out}) == 2);
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune", "8x32", "-o", out}) == 2);
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune", "8:32", "--tune-rounds", "-1", "-o", out}) == 2);
  CHECK(tool({"quantize", gguf, "--plan", plan, "--tune-seed", "3", "-o", out}) == 2);  // needs --tune
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("measure --tune R records the tuning and measures GPTQ's bytes", "[cli][tune]") {
  const fs::path dir = dir_with_model("mixprec_tune_measure");
  const std::string gguf = (dir / "a.gguf").string(), plain = (dir / "plain.json").string(), tuned = (dir / "tuned.json").string();
  const std::vector<std::string> base = {"measure", gguf, "--types", "q4_0,q8_0", "--sample", "4:32", "--seed", "7"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  REQUIRE(tool(with({"-o", plain})) == 0);
  REQUIRE(tool(with({"--tune", "0", "-o", tuned})) == 0);
  const nlohmann::json a = mixprec::test::read_json(plain), b = mixprec::test::read_json(tuned);
  CHECK_FALSE(a.at("method").contains("tune_rounds"));
  CHECK(b.at("method").at("tune_rounds") == 0);
  double gram_a = 0.0, gram_b = 0.0;
  for (std::size_t k = 0; k < a.at("tensors").size(); ++k)
    for (std::size_t j = 0; j < a.at("tensors")[k].at("results").size(); ++j) {
      gram_a += a.at("tensors")[k].at("results")[j].at("gram_proxy").get<double>();
      gram_b += b.at("tensors")[k].at("results")[j].at("gram_proxy").get<double>();
    }
  CHECK(gram_b < 0.9 * gram_a);
  CHECK(tool(with({"--tune", "17", "-o", tuned})) == 2);
}
