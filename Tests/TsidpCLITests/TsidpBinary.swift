import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The built `tsidp` executable, run as an operator runs it: its exit status and what it prints.
struct TsidpBinary {
    /// What a finished run left behind.
    struct Outcome {
        var status: Int32
        var standardOutput: String
        var standardError: String
        var elapsed: Duration

        /// Standard error's lines, without the empty one after the last newline.
        var errorLines: [String] {
            standardError.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter {
                !$0.isEmpty
            }
        }
    }

    let path: String

    /// `TSIDP_BINARY`, or `tsidp` next to the test bundle (`swift test` builds it there).
    static func locate() -> TsidpBinary? {
        if let configured = ProcessInfo.processInfo.environment["TSIDP_BINARY"], !configured.isEmpty {
            return TsidpBinary(path: configured)
        }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        // On macOS the runner sits inside `<name>.xctest/Contents/MacOS`.
        while directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent() }
        let candidate = directory.appendingPathComponent("tsidp").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? TsidpBinary(path: candidate) : nil
    }

    /// The binary, or a recorded failure saying how to build it.
    static func required() throws -> TsidpBinary {
        guard let binary = locate() else {
            Issue.record("the tsidp binary was not found next to the tests; run swift build, or set TSIDP_BINARY")
            throw CancellationError()
        }
        return binary
    }

    /// A scratch directory for one run (its working directory, state and logs).
    static func scratchDirectory() throws -> String {
        let directory = NSTemporaryDirectory() + "tsidp-binary-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    /// A started tsidp process.
    struct Running {
        let process: Process
        let standardOutput: URL
        let standardError: URL
        let exits: AsyncStream<Void>

        /// Waits until the process exits; false if `limit` passed first.
        func waitForExit(limit: Duration) async -> Bool {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for await _ in exits { break }
                    return !Task.isCancelled
                }
                group.addTask {
                    try? await Task.sleep(for: limit)
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
        }

        /// What standard error holds so far.
        var errorText: String { (try? String(contentsOf: standardError, encoding: .utf8)) ?? "" }

        /// Waits (bounded) until standard error contains `text`; false if the process exited or
        /// `limit` passed first. The binary has no ready signal but its output, so this looks
        /// at the file every 50 ms.
        func waitForError(containing text: String, limit: Duration) async -> Bool {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                if errorText.contains(text) { return true }
                if !process.isRunning { return errorText.contains(text) }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return errorText.contains(text)
        }
    }

    /// Starts tsidp with `arguments` in `directory` (a clean environment plus `environment`);
    /// output goes to files there.
    func start(_ arguments: [String], in directory: String, environment: [String: String] = [:]) throws -> Running {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ["PATH": "/usr/bin:/bin"].merging(environment) { $1 }
        let stdout = URL(fileURLWithPath: directory + "/tsidp.stdout")
        let stderr = URL(fileURLWithPath: directory + "/tsidp.stderr")
        try Data().write(to: stdout)
        try Data().write(to: stderr)
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        process.standardInput = FileHandle.nullDevice
        let (exits, exited) = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in
            exited.yield()
            exited.finish()
        }
        try process.run()
        return Running(process: process, standardOutput: stdout, standardError: stderr, exits: exits)
    }

    /// Runs tsidp to completion; a run that outlasts `limit` is killed and recorded as a failure.
    func run(
        _ arguments: [String], in directory: String, environment: [String: String] = [:],
        limit: Duration = .seconds(60)
    ) async throws -> Outcome {
        let started = ContinuousClock.now
        let running = try start(arguments, in: directory, environment: environment)
        if await !running.waitForExit(limit: limit) {
            Issue.record("tsidp \(arguments.joined(separator: " ")) did not exit within \(limit)")
            running.process.terminate()
            running.process.waitUntilExit()
        }
        return Outcome(
            status: running.process.terminationStatus,
            standardOutput: try String(contentsOf: running.standardOutput, encoding: .utf8),
            standardError: try String(contentsOf: running.standardError, encoding: .utf8),
            elapsed: ContinuousClock.now - started)
    }
}
