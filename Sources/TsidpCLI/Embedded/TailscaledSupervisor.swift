import Foundation
import Logging
import ServiceLifecycle
import Tailnet

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs tsidp's own `tailscaled` (embedded mode): starts it, logs it in, restarts it with backoff
/// when it exits, and stops it on shutdown. Placed before the listeners in the service group, so
/// that it stops after they have drained.
///
/// - Important: Its description names the program and socket only: ServiceLifecycle logs every
///   service at debug level, and the environment and settings hold secrets.
struct TailscaledSupervisor: Service, CustomStringConvertible {
    /// The program and its command line.
    let executable: String
    let arguments: [String]
    let environment: [String: String]
    let localAPI: LocalAPIClient
    let settings: NodeSettings
    let node: EmbeddedNode
    /// Where the child's pid is kept, so that a tailscaled left behind by a killed tsidp is found.
    let pidFile: String
    let logger: Logger
    /// The level of tailscaled's own output in tsidp's log.
    let outputLevel: Logger.Level
    /// How a person is told what to do (a login URL to open).
    let tell: @Sendable (String) -> Void
    /// Backoff between restarts: the first delay, doubled after each crash up to `maximumDelay`.
    var initialDelay: Duration = .seconds(1)
    var maximumDelay: Duration = .seconds(30)
    /// A run this long counts as healthy: the next crash starts the backoff again.
    var healthyRun: Duration = .seconds(60)
    /// How long tailscaled may take to open its socket.
    var socketWait: Duration = .seconds(60)

    var description: String { "TailscaledSupervisor(\(executable), socket: \(localAPI.socketPath))" }

    enum Outcome {
        case idle
        case shutdown
        case exited(Int32)
        case stopped(Int32)
        case loginFailed(NodeLoginFailure)
        case apiFailed(String)
    }

    func run() async throws {
        try stopLeftover()
        var delay = initialDelay
        var everRunning = false
        var quickFailures = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let child = TailscaledProcess(
                executable: executable, arguments: arguments, environment: environment, logger: logger)
            do {
                try child.start(outputLevel: outputLevel)
            } catch {
                throw UsageError("cannot start tailscaled (\(executable)): \(error)")
            }
            writePidFile(child.pid)
            logger.info("tailscaled started", metadata: ["pid": "\(child.pid)", "socket": "\(localAPI.socketPath)"])
            let started = ContinuousClock.now
            let outcome = await runOnce(child)
            let ranFor = ContinuousClock.now - started
            let reachedRunning = await node.isRunning
            everRunning = everRunning || reachedRunning
            switch outcome {
            case .stopped(let status):
                removePidFile()
                logger.info("tailscaled stopped", metadata: ["status": "\(status)"])
                return
            case .loginFailed(let failure):
                removePidFile()
                throw failure
            case .exited, .apiFailed, .idle, .shutdown:
                break
            }
            await node.down()
            let why: String
            switch outcome {
            case .exited(let status): why = "tailscaled exited with status \(status)"
            case .apiFailed(let message): why = "tailscaled stopped answering: \(message)"
            default: why = "tailscaled stopped"
            }
            let output = child.recentOutput.suffix(6).joined(separator: " | ")
            if !everRunning, ranFor < .seconds(5) {
                quickFailures += 1
                if quickFailures >= 3 {
                    removePidFile()
                    throw NodeLoginFailure(
                        message: "\(why) three times in a row before it ever ran"
                            + (output.isEmpty ? "" : "; its last words: \(output)"))
                }
            } else {
                quickFailures = 0
            }
            if ranFor >= healthyRun { delay = initialDelay }
            logger.error(
                "\(why); restarting it in \(delay)",
                metadata: output.isEmpty ? [:] : ["tailscaled_output": "\(output)"])
            if child.hasExited == false { _ = await child.stop() }
            let pause = delay
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
            } catch {
                removePidFile()
                return
            }
            delay = min(delay * 2, maximumDelay)
        }
    }

    /// One life of the child: log it in, then wait for it to exit or for shutdown.
    func runOnce(_ child: TailscaledProcess) async -> Outcome {
        await withTaskGroup(of: Outcome.self) { group in
            group.addTask { .exited(await child.waitForExit()) }
            group.addTask {
                do {
                    try await waitForSocket(child)
                    let status = try await NodeLogin(
                        localAPI: localAPI, settings: settings, logger: logger, tell: tell
                    ).bringUp()
                    await node.up(status)
                    while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
                    return .idle
                } catch let failure as NodeLoginFailure {
                    return .loginFailed(failure)
                } catch {
                    return Task.isCancelled ? .idle : .apiFailed("\(error)")
                }
            }
            group.addTask {
                // Returns on graceful shutdown, and (throwing) when the group is cancelled.
                try? await gracefulShutdown()
                return .shutdown
            }
            while let next = await group.next() {
                switch next {
                case .idle:
                    continue
                case .shutdown, .stopped:
                    let status = await child.stop()
                    group.cancelAll()
                    return .stopped(status)
                case .exited:
                    group.cancelAll()
                    return next
                case .loginFailed, .apiFailed:
                    if case .apiFailed = next, child.hasExited {
                        // The login failed because tailscaled died: a crash, not a refusal.
                        group.cancelAll()
                        return .exited(await child.waitForExit())
                    }
                    _ = await child.stop()
                    group.cancelAll()
                    return next
                }
            }
            return .idle
        }
    }

    /// Waits until tailscaled accepts connections on its socket.
    func waitForSocket(_ child: TailscaledProcess) async throws {
        let deadline = ContinuousClock.now + socketWait
        while true {
            do {
                try localAPI.probeSocket()
                return
            } catch {
                if child.hasExited { throw LocalAPIError.transport("tailscaled exited before opening its socket") }
                if ContinuousClock.now > deadline {
                    throw LocalAPIError.transport(
                        "tailscaled did not open its socket \(localAPI.socketPath) within \(socketWait)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Stops a tailscaled that an earlier tsidp started on this socket and left running (tsidp
    /// was killed), and refuses to start when someone else's daemon holds the socket.
    func stopLeftover() throws {
        guard (try? localAPI.probeSocket()) != nil else { return }
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
            Self.isTailscaled(pid: pid, socket: localAPI.socketPath)
        {
            logger.warning(
                "stopping the tailscaled an earlier tsidp left running", metadata: ["pid": "\(pid)"])
            kill(pid, SIGTERM)
            for _ in 0..<100 where kill(pid, 0) == 0 { usleep(100_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
            for _ in 0..<50 where (try? localAPI.probeSocket()) != nil { usleep(100_000) }
            return
        }
        throw UsageError(
            "another tailscaled is already listening on \(localAPI.socketPath): stop it, or give this tsidp its own --dir"
        )
    }

    /// Whether process `pid` is a tailscaled serving `socket` (its command line names both).
    static func isTailscaled(pid: Int32, socket: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let words = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let program = words.first,
            program.hasSuffix("tailscaled") || words.contains(where: { $0.hasSuffix("/tailscaled") })
        else { return false }
        return words.contains("--socket=\(socket)")
    }

    func writePidFile(_ pid: Int32) {
        do {
            try Data("\(pid)\n".utf8).write(to: URL(fileURLWithPath: pidFile), options: .atomic)
        } catch {
            logger.warning("cannot write \(pidFile): \(error.localizedDescription)")
        }
    }

    /// Removes the pid file; a failure is logged (the file is not state: a stale one is checked
    /// against the process's command line before anything is done with it).
    func removePidFile() {
        guard FileManager.default.fileExists(atPath: pidFile) else { return }
        do {
            try FileManager.default.removeItem(atPath: pidFile)
        } catch {
            logger.warning("cannot remove \(pidFile): \(error.localizedDescription)")
        }
    }
}
