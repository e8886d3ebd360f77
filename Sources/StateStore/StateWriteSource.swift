import Foundation

/// One store write prepared by a ``StateWriteSource``.
public struct StateBatch: Sendable {
    /// What to write: a `nil` value deletes the key.
    public var entries: [String: Data?]
    /// Housekeeping (deleting what newer files already contain): its failure is logged and retried
    /// later, and answers no request.
    public var isHousekeeping: Bool

    public init(entries: [String: Data?], isHousekeeping: Bool = false) {
        self.entries = entries
        self.isHousekeeping = isHousekeeping
    }
}

/// A holder of stored state (the grant ledger, the client registry, the key ring) whose changes
/// reach the store only through the ``StateWriter``.
///
/// The writer asks the source for its next batch, writes it, and reports the outcome, one batch
/// at a time per writer; the source decides what a batch holds (every change since the last one,
/// for group commit) and what a failure means for memory.
///
/// - Important: After ``finish(_:error:)`` with an error, the source's memory must again match
///   what the store holds, and every request whose change was in the failed batch must fail.
public protocol StateWriteSource: AnyObject, Sendable {
    /// A short name for logs (`grants`, `clients`, `keys`).
    var name: String { get }
    /// The next batch to write, or `nil` when nothing is waiting.
    func nextBatch() async -> StateBatch?
    /// The outcome of the batch ``nextBatch()`` returned last: `nil` when it is durable.
    func finish(_ batch: StateBatch, error: (any Error)?) async
    /// The writer will write nothing more (shutdown): fail every change still waiting.
    func abandon(_ error: any Error) async
}
