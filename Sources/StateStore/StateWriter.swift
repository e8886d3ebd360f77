import Foundation
import Logging
import ServiceLifecycle
import Telemetry

/// The one write path of everything tsidp stores: grants, clients and keys.
///
/// A source (``StateWriteSource``) changes its memory, then calls ``flush(_:)`` and awaits its
/// ticket. The first call to find the writer idle starts the writer's drain task, which writes
/// batch after batch for every source that asked meanwhile, until none has anything left; later
/// calls only add their source. So concurrent requests share one store write (group commit),
/// writes never overlap or reorder, and a request waits for the batch that holds its change, not
/// for housekeeping after it (a compaction step, deletions). The drain task belongs to the
/// writer: ``idle()`` and ``close()`` await it, so no write outlives the writer unobserved.
///
/// As a ``Service`` it is the last to stop: on graceful shutdown it lets the write in progress
/// finish, then refuses further writes, so the process exits with memory and store in agreement.
public actor StateWriter: Service {
    /// The store behind the writer; reads may use it directly.
    public nonisolated let store: any StateStore
    private let logger: Logger
    private var wanted: [any StateWriteSource] = []
    private var busy = false
    private var closed = false
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    /// Store writes made, failed or not (tests observe batching through it).
    public private(set) var writes = 0
    /// Store writes that failed.
    public private(set) var failures = 0
    /// Where each write's duration and failure is recorded.
    private let metrics: TsidpMetrics?

    public init(store: any StateStore, logger: Logger = Logger(label: "tsidp.state"), metrics: TsidpMetrics? = nil) {
        self.store = store
        self.logger = logger
        self.metrics = metrics
    }

    /// Makes `source`'s pending changes durable: starts the drain task, or leaves them to the
    /// one already running. Returns at once; the outcome of a change is reported to its
    /// source's ticket. Await ``idle()`` to wait for everything to be written.
    public func flush(_ source: any StateWriteSource) async {
        if closed {
            await source.abandon(StateStoreError(.io, "tsidp is shutting down; nothing more is stored"))
            return
        }
        if !wanted.contains(where: { $0 === source }) { wanted.append(source) }
        guard !busy else { return }
        busy = true
        Task { await self.drain() }
    }

    /// Writes until no source has anything left, then wakes whoever waits for idleness.
    private func drain() async {
        while !wanted.isEmpty {
            let next = wanted.removeFirst()
            while let batch = await next.nextBatch() {
                writes += 1
                let started = ContinuousClock.now
                do {
                    try await store.write(batch.entries)
                    metrics?.stateWrite(duration: ContinuousClock.now - started, failed: false)
                    await next.finish(batch, error: nil)
                } catch {
                    metrics?.stateWrite(duration: ContinuousClock.now - started, failed: true)
                    failures += 1
                    if batch.isHousekeeping {
                        logger.warning(
                            "cleanup of superseded state failed; it is retried later",
                            metadata: ["source": "\(next.name)", "store": "\(store.description)", "error": "\(error)"])
                    } else {
                        logger.error(
                            "state write failed; the requests that caused it are refused and nothing is lost",
                            metadata: ["source": "\(next.name)", "store": "\(store.description)", "error": "\(error)"])
                    }
                    await next.finish(batch, error: error)
                }
            }
        }
        busy = false
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until no write is in progress.
    public func idle() async {
        guard busy else { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    /// Refuses further writes after the one in progress has finished.
    public func close() async {
        closed = true
        await idle()
    }

    /// Runs until graceful shutdown, then drains: the write in progress finishes and later ones
    /// are refused. Put the writer first in the service group so that it stops after the
    /// listeners whose requests write.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
        logger.debug("state writer drained", metadata: ["writes": "\(writes)", "failures": "\(failures)"])
    }
}
