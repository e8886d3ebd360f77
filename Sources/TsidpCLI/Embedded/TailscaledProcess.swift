import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One run of the `tailscaled` child: started, its output kept (the last lines explain an exit)
/// and passed to the log, and its exit awaited.
final class TailscaledProcess: Sendable {
    private struct State {
        var pid: Int32 = 0
        var exitStatus: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []
        var recentLines: [String] = []
        var partialLine = ""
    }
    private let state = Mutex(State())
    private let executable: String
    private let arguments: [String]
    private let environment: [String: String]
    private let logger: Logger
    /// How many of the child's last output lines are kept for the exit message.
    static let keptLines = 12

    /// - Parameters:
    ///   - logger: where the child's output goes, one log line per output line.
    init(executable: String, arguments: [String], environment: [String: String], logger: Logger) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.logger = logger
    }

    /// Starts the child in a process group of its own (a terminal's Ctrl-C reaches tsidp, which
    /// stops tailscaled after its listeners have drained), with every signal at its default and
    /// none blocked: tsidp's threads block and ignore signals, and a child would inherit that.
    ///
    /// - Throws: ``SpawnError`` when the program cannot be run.
    func start(outputLevel: Logger.Level) throws {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw SpawnError(code: errno) }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])
        // Neither end may leak into another child; the child gets the write end through dup2.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(writeEnd)
        guard result == 0 else {
            close(readEnd)
            throw SpawnError(code: result)
        }
        let child = pid
        state.withLock { $0.pid = child }

        // Signalled when the output pipe reaches its end, so that an exit is reported with the
        // child's last lines already read (the exit can be seen before its final output is).
        let outputDrained = DispatchSemaphore(value: 0)
        let reader = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                if count <= 0 { break }
                take(Data(buffer[0..<count]), level: outputLevel)
            }
            close(readEnd)
            take(Data("\n".utf8), level: outputLevel)
            outputDrained.signal()
        }
        reader.name = "tailscaled output"
        reader.start()
        let waiter = Thread { [self] in
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 {
                if errno != EINTR {
                    finish(code: 255)
                    return
                }
            }
            let signal = status & 0x7f
            // A process the child left behind may hold the pipe open: wait for its end briefly only.
            _ = outputDrained.wait(timeout: .now() + 2)
            finish(code: signal == 0 ? (status >> 8) & 0xff : 128 + signal)
        }
        waiter.name = "tailscaled exit"
        waiter.start()
    }

    /// Why the program could not be started.
    struct SpawnError: Error, CustomStringConvertible {
        var code: Int32
        var description: String { String(cString: strerror(code)) }
    }

    var pid: Int32 { state.withLock { $0.pid } }

    /// Sends `signal` to the child if it still runs (its exit has not been collected, so the
    /// pid cannot have been reused).
    func send(_ signal: Int32) {
        let (pid, running) = state.withLock { ($0.pid, $0.exitStatus == nil) }
        if running, pid > 0 { kill(pid, signal) }
    }

    /// Waits for the child to exit and returns its status (for a signal, 128 + the signal).
    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            let done: Int32? = state.withLock { state in
                if let status = state.exitStatus { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Whether the child has exited.
    var hasExited: Bool { state.withLock { $0.exitStatus != nil } }

    /// The child's last output lines, oldest first.
    var recentOutput: [String] { state.withLock { $0.recentLines } }

    /// Asks the child to stop (SIGTERM) and waits for it; after `grace` it is killed.
    func stop(grace: Duration = .seconds(10)) async -> Int32 {
        send(SIGTERM)
        return await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await self.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: grace)
                return nil
            }
            while let result = await group.next() {
                if let status = result {
                    group.cancelAll()
                    return status
                }
                logger.warning("tailscaled did not stop within \(grace); killing it")
                send(SIGKILL)
            }
            return await waitForExit()
        }
    }

    private func finish(code: Int32) {
        let waiters = state.withLock { state in
            state.exitStatus = code
            let waiters = state.waiters
            state.waiters = []
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: code) }
    }

    private func take(_ data: Data, level: Logger.Level) {
        let lines: [String] = state.withLock { state in
            state.partialLine += String(decoding: data, as: UTF8.self)
            var complete = state.partialLine.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            state.partialLine = complete.removeLast()
            if state.partialLine.utf8.count > 64 * 1024 {
                complete.append(state.partialLine)
                state.partialLine = ""
            }
            let kept = complete.filter { !$0.isEmpty }
            state.recentLines.append(contentsOf: kept)
            if state.recentLines.count > Self.keptLines {
                state.recentLines.removeFirst(state.recentLines.count - Self.keptLines)
            }
            return kept
        }
        for line in lines {
            logger.log(level: level, "\(line)", metadata: ["component": "tailscaled"])
        }
    }
}
