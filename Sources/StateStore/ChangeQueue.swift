/// Changes to a small stored value (the client registry, the key ring) waiting for the
/// ``StateWriter``, applied to memory only once written ("write, then publish").
///
/// Each change is a function of the value as it is when its batch is built, so changes made
/// concurrently apply one after the other and never overwrite each other. A change that throws
/// is refused alone; the others of its batch go ahead.
public struct ChangeQueue<Value: Sendable>: Sendable {
    public typealias Change = @Sendable (inout Value) throws -> Void

    struct Job: Sendable {
        var change: Change
        var ticket: WriteTicket
    }

    private var queued: [Job] = []
    private var inFlight: (value: Value, tickets: [WriteTicket])?

    public init() {}

    /// Queues `change`; its ticket reports whether it was stored.
    public mutating func enqueue(_ change: @escaping Change) -> WriteTicket {
        let ticket = WriteTicket()
        queued.append(Job(change: change, ticket: ticket))
        return ticket
    }

    /// Applies every queued change to `current` and returns the value to write, or `nil` when no
    /// change is waiting (or every one was refused). Refused changes' tickets are resolved with
    /// their error.
    public mutating func begin(from current: Value) -> Value? {
        precondition(inFlight == nil, "one batch at a time")
        guard !queued.isEmpty else { return nil }
        var next = current
        var accepted: [WriteTicket] = []
        for job in queued {
            var trial = next
            do {
                try job.change(&trial)
                next = trial
                accepted.append(job.ticket)
            } catch {
                job.ticket.resolve(error)
            }
        }
        queued.removeAll()
        guard !accepted.isEmpty else { return nil }
        inFlight = (next, accepted)
        return next
    }

    /// Ends the batch: returns the value to publish (only when it was stored) and the batch's
    /// tickets. The caller publishes the value first and then resolves every ticket with
    /// `error`, so that a request whose change was stored finds it published when it resumes.
    public mutating func finish(error: (any Error)?) -> (value: Value?, tickets: [WriteTicket]) {
        guard let flight = inFlight else { return (nil, []) }
        inFlight = nil
        return (error == nil ? flight.value : nil, flight.tickets)
    }

    /// Fails every queued change (the writer is closed).
    public mutating func abandon(_ error: any Error) {
        for job in queued { job.ticket.resolve(error) }
        queued.removeAll()
    }
}
