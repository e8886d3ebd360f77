import Foundation

/// A state store that lives in memory only; for tests and ephemeral runs.
public actor MemoryStateStore: StateStore {
    private var values: [String: Data]
    /// How many batches have been written; tests use it to observe write batching.
    public private(set) var writeCount = 0

    public init(_ initial: [String: Data] = [:]) {
        self.values = initial
    }

    public func read(_ key: String) async throws -> Data? {
        try StateKey.validate(key)
        return values[key]
    }

    public func write(_ entries: [String: Data?]) async throws {
        for key in entries.keys { try StateKey.validate(key) }
        for (key, value) in entries {
            values[key] = value
        }
        writeCount += 1
    }

    public func keys() async throws -> [String] {
        values.keys.sorted()
    }

    public nonisolated var description: String { "memory" }
}
