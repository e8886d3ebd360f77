import Synchronization

/// A flag that is set once and read from any task.
final class StartFlag: Sendable {
    private let value = Atomic<Bool>(false)

    init() {}

    /// Marks the listener as running.
    func set() { value.store(true, ordering: .releasing) }

    /// Whether ``set()`` has happened.
    var isSet: Bool { value.load(ordering: .acquiring) }
}
