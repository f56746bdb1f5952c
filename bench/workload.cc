#include "bench/workload.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <latch>
#include <mutex>
#include <thread>

namespace dojang::bench {

namespace {

using Clock = std::chrono::steady_clock;

double percentileUs(std::vector<std::uint32_t>& nanos, double q) {
  if (nanos.empty()) return 0;
  auto index = static_cast<std::size_t>(q * static_cast<double>(nanos.size() - 1));
  std::nth_element(nanos.begin(), nanos.begin() + static_cast<std::ptrdiff_t>(index), nanos.end());
  return static_cast<double>(nanos[index]) / 1000.0;
}

}  // namespace

Result runCase(const Module& module, CK_SLOT_ID slot, const Case& c, unsigned threads,
               const Limits& limits) {
  std::vector<Worker> workers;
  workers.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) workers.emplace_back(c, Session(module, slot, false));
  for (Worker& w : workers) {
    for (unsigned i = 0; i < limits.warmupOps; ++i) w.op();
  }

  std::vector<std::vector<std::uint32_t>> latencies(threads);
  std::vector<Clock::time_point> starts(threads);
  std::vector<Clock::time_point> ends(threads);
  std::atomic<bool> stop{false};
  std::mutex errorMutex;
  std::exception_ptr error;
  std::latch ready(threads + 1);
  Clock::time_point deadline;

  auto body = [&](unsigned t) {
    std::vector<std::uint32_t>& lat = latencies[t];
    lat.reserve(limits.opsPerThread != 0 ? limits.opsPerThread : 1U << 16);
    ready.arrive_and_wait();
    Clock::time_point now = Clock::now();
    starts[t] = now;
    try {
      for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        if (limits.opsPerThread != 0 ? n >= limits.opsPerThread : now >= deadline) break;
        // A fresh start time, so recording the previous latency is never counted.
        Clock::time_point before = Clock::now();
        workers[t].op();
        now = Clock::now();
        auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now - before).count();
        lat.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(nanos, UINT32_MAX)));
      }
    } catch (...) {
      std::lock_guard lock(errorMutex);
      if (!error) error = std::current_exception();
      stop = true;
    }
    ends[t] = Clock::now();
  };

  std::vector<std::jthread> pool;
  pool.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
  // Published to the workers by the latch.
  deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(limits.seconds));
  ready.arrive_and_wait();
  pool.clear();  // joins
  if (error) std::rethrow_exception(error);

  Result r;
  r.name = c.name;
  r.threads = threads;
  std::vector<std::uint32_t> all;
  for (auto& lat : latencies) {
    r.ops += lat.size();
    all.insert(all.end(), lat.begin(), lat.end());
  }
  auto first = *std::min_element(starts.begin(), starts.end());
  auto last = *std::max_element(ends.begin(), ends.end());
  r.seconds = std::chrono::duration<double>(last - first).count();
  r.opsPerSecond = r.seconds > 0 ? static_cast<double>(r.ops) / r.seconds : 0;
  r.p50Us = percentileUs(all, 0.50);
  r.p99Us = percentileUs(all, 0.99);
  return r;
}

}  // namespace dojang::bench
