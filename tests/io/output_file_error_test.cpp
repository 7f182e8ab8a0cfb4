// output_file when the system refuses a write: errc::output_error naming the target and the system's
// reason, whether the write that fails is a large block written through or the last buffered bytes
// flushed by commit(), and nothing left behind. A file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored)
// stands in for a full disk: write(2) fails with EFBIG where a full disk gives ENOSPC.
#include <catch2/catch.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <string>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mixprec/io/output_file.hpp"

namespace fs = std::filesystem;

TEST_CASE("a write the system refuses is an output_error naming the file and the reason; nothing is left", "[io][output]") {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_output_error_" + std::to_string(::getpid()));
  for (const std::size_t piece : {std::size_t{1} << 20, std::size_t{100}}) {  // one block past the limit; small writes
    INFO("written in pieces of " << piece << " bytes");
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string target = (dir / "model.gguf").string();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      std::signal(SIGXFSZ, SIG_IGN);
      const ::rlimit limit{4096, 4096};
      ::setrlimit(RLIMIT_FSIZE, &limit);
      int code = 10;  // 10: nothing thrown
      try {
        mixprec::output_file out(target);
        const std::string block(piece, 'x');
        for (std::size_t written = 0; written < (std::size_t{1} << 20); written += piece) out.stream().write(block.data(), static_cast<std::streamsize>(piece));
        out.commit();
      } catch (const mixprec::error& e) {
        const std::string m = e.what();
        code = e.code() != mixprec::errc::output_error               ? 11
               : m.find(target) == std::string::npos                 ? 12
               : m.find(std::strerror(EFBIG)) == std::string::npos   ? 13
                                                                     : 0;
      } catch (...) {
        code = 14;  // anything else (std::ios_base::failure) hides the reason
      }
      ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(fs::is_empty(dir));  // no model.gguf, no ".model.gguf.XXXXXX"
  }
  fs::remove_all(dir);
}
