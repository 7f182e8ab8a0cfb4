// mixprec-mpi: `mixprec measure` over the ranks of an MPI job, one shard per rank:
//   mpirun -np K mixprec-mpi measure MODEL.gguf --types ... (--text F | --tokens F | --sample N:LEN) [--imatrix-out F] -o measure.json
// The options are `mixprec measure`'s (app.hpp's measure_command) but --shard: rank r measures shard r/K in-process
// (measure_file), rank 0 gathers every rank's partial JSON (MPI_Gather of the lengths, MPI_Gatherv of
// the bytes), joins them with merge_measures and writes the file one `mixprec measure` writes, byte for
// byte. Only rank 0 prints (the table, the progress of its own shard) and writes (the measure file, the
// imatrix files); every rank runs the same full-precision pass, so each holds the model.
//
// Exit codes are cli.hpp's. A failure on any rank makes every rank exit with the code of the lowest
// failed rank, which alone prints its message: after each step the ranks exchange their status
// (MPI_Allgather), so a rank never waits in a collective that a failed rank will not join.
#include <climits>
#include <csignal>
#include <string>
#include <vector>

#include <mpi.h>

#include "app.hpp"

namespace {

using namespace mixprec_cli;

// MPI_Init_thread / MPI_Finalize. Only the main thread calls MPI (measure_file's workers never do).
struct mpi_session {
  int rank = 0, size = 1;
  mpi_session(int* argc, char*** argv) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() { MPI_Finalize(); }
};

// Runs f on this rank, then agrees with every rank: 0 if all succeeded, otherwise the exit code of the
// lowest rank that failed, which prints its message (an error on every rank is printed once).
template <class F>
int collective_step(const mpi_session& mpi, F&& f) {
  int code = 0;
  std::string message;
  try {
    f();
  } catch (const error& e) {
    code = exit_code(e.code());
    message = e.what();  // "mixprec: ..."
  } catch (const std::exception& e) {
    code = 1;
    message = std::string("mixprec: unexpected failure (a bug; please report it): ") + e.what();
  }
  std::vector<int> codes(static_cast<std::size_t>(mpi.size));
  MPI_Allgather(&code, 1, MPI_INT, codes.data(), 1, MPI_INT, MPI_COMM_WORLD);
  for (int r = 0; r < mpi.size; ++r) {
    if (codes[static_cast<std::size_t>(r)] == 0) continue;
    if (r == mpi.rank) {
      if (mpi.rank == 0) std::fprintf(stderr, "%s\n", message.c_str());
      else std::fprintf(stderr, "%s (rank %d of %d)\n", message.c_str(), mpi.rank, mpi.size);
    }
    return codes[static_cast<std::size_t>(r)];
  }
  return 0;
}

int run_measure(const mpi_session& mpi, int argc, char** argv) {
  CLI::App app{"mixprec-mpi: `mixprec measure` with one shard per MPI rank, merged on rank 0 (mpirun -np K mixprec-mpi measure ...)"};
  app.require_subcommand(1);
  detail::measure_command mc;  // `mixprec measure`'s options (app.hpp) but --shard: the rank is the shard
  detail::add_measure_command(app, mc, false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {  // the same argv on every rank: the same outcome, printed once
    if (mpi.rank == 0) return app.exit(e) == 0 ? 0 : 2;
    return e.get_exit_code() == 0 ? 0 : 2;
  }

  // 1. The request (as `mixprec measure` checks it); the outputs only where they are written (rank 0).
  measure_options mo;
  if (const int rc = collective_step(mpi, [&] { mo = detail::measure_request(mc, mpi.rank == 0); })) return rc;
  mo.shard_index = mpi.rank;
  mo.shard_count = mpi.size;
  if (mpi.rank != 0) mo.imatrix_out.clear(), mo.imatrix_dat_out.clear();

  // 2. This rank's shard, as the partial file `mixprec measure --shard r/K` writes (the whole file when K = 1).
  std::string part;
  if (const int rc = collective_step(mpi, [&] {
        nlohmann::json meta;
        const auto tensors = measure_file(mc.file, mo, &meta, mpi.rank == 0);
        part = measure_json(tensors, meta, mo.probe).dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (part.size() > static_cast<std::size_t>(INT_MAX))
          throw error(errc::unsupported, "rank " + std::to_string(mpi.rank) + "'s measure holds more than INT_MAX bytes of JSON, more than one MPI message");
      }))
    return rc;

  // 3. Every part to rank 0: the lengths, then the bytes (the total must fit MPI's int displacements).
  const int length = static_cast<int>(part.size());
  std::vector<int> lengths(static_cast<std::size_t>(mpi.size)), offsets(static_cast<std::size_t>(mpi.size));
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (const int rc = collective_step(mpi, [&] {
        long long total = 0;
        for (std::size_t r = 0; r < lengths.size() && mpi.rank == 0; ++r) {
          offsets[r] = static_cast<int>(total);
          total += lengths[r];
          if (total > INT_MAX) throw error(errc::unsupported, "the ranks' measures hold more than INT_MAX bytes of JSON, more than one MPI message");
        }
      }))
    return rc;
  std::string all(mpi.rank == 0 ? static_cast<std::size_t>(offsets.back()) + static_cast<std::size_t>(lengths.back()) : 0, '\0');
  MPI_Gatherv(part.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD);

  // 4. Rank 0 merges and writes; the others wait for its outcome (their exit code).
  return collective_step(mpi, [&] {
    if (mpi.rank != 0) return;
    std::vector<nlohmann::json> parts;
    std::vector<std::string> names;
    for (int r = 0; r < mpi.size; ++r) {
      const auto at = static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]);
      parts.push_back(nlohmann::json::parse(all.begin() + static_cast<std::ptrdiff_t>(at),
                                            all.begin() + static_cast<std::ptrdiff_t>(at + static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)]))));
      names.push_back("rank " + std::to_string(r));
    }
    const nlohmann::json merged = mpi.size == 1 ? parts.front() : merge_measures(parts, names);
    detail::print_measure_table(merged);
    mixprec::output_file out(mc.output, {mc.file});
    out.stream() << merged.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    out.commit();
    std::fprintf(stderr, "wrote %s (%d ranks, %zu tensors)\n", mc.output.c_str(), mpi.size, merged.at("tensors").size());
  });
}

}  // namespace

int main(int argc, char** argv) {
  const mpi_session mpi(&argc, &argv);
  mixprec::remove_pending_outputs_on_signals();  // mpirun forwards SIGINT/SIGTERM to the ranks
  return run_measure(mpi, argc, argv);
}
