// The library's worker pool (detail/parallel.hpp): every unit runs once, and an exception in a worker
// reaches the caller (it once called std::terminate in the GEMV row split).
#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "mixprec/detail/parallel.hpp"

using namespace mixprec;

TEST_CASE("parallel_for and for_row_chunks cover every unit once and rethrow a worker's exception", "[detail][parallel]") {
  for (unsigned workers : {1u, 2u, 3u, 8u}) {
    std::vector<std::atomic<int>> seen(101);
    detail::parallel_for(seen.size(), workers, [&](std::size_t i, unsigned w) {
      CHECK(w < workers);
      ++seen[i];
    });
    for (const auto& s : seen) CHECK(s == 1);
    std::vector<std::atomic<int>> rows(1000);
    detail::for_row_chunks(static_cast<index_t>(rows.size()), workers, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) ++rows[static_cast<std::size_t>(r)];
    });
    for (const auto& r : rows) CHECK(r == 1);
    CHECK_THROWS_AS(detail::parallel_for(50, workers, [](std::size_t i, unsigned) {
                      if (i == 17) throw std::runtime_error("unit 17");
                    }),
                    std::runtime_error);
    CHECK_THROWS_WITH(detail::for_row_chunks(1000, workers, [](index_t r0, index_t) {
                        if (r0 > 0 || true) throw std::runtime_error("chunk");
                      }),
                      "chunk");
  }
  CHECK(detail::worker_count(0, 5) >= 1);
  CHECK(detail::worker_count(4, 2) == 2);
  CHECK(detail::worker_count(4, 0) == 1);
}
