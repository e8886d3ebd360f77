import AnyJSON
import Foundation

/// The RFC 8693 `act` claim: who acts on the subject's behalf, possibly nested.
public struct ActorClaim: Sendable, Codable, Equatable {
    public var sub: String
    public var clientID: String?
    public var act: Box?

    /// Indirection so the claim can nest.
    public final class Box: Sendable, Codable, Equatable {
        public let value: ActorClaim
        public init(_ value: ActorClaim) { self.value = value }
        public static func == (a: Box, b: Box) -> Bool { a.value == b.value }
        public init(from decoder: any Decoder) throws { value = try ActorClaim(from: decoder) }
        public func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
    }

    enum CodingKeys: String, CodingKey {
        case sub, clientID = "client_id", act
    }

    /// How many actors an `act` claim may nest (RFC 8693 §4.1 sets no bound; without one, each
    /// exchange that uses the previous exchanged token as its actor makes the record deeper).
    public static let maximumDepth = 8

    /// How many actors this claim names, itself included.
    var depth: Int {
        var depth = 1
        var next = act
        while let box = next {
            depth += 1
            next = box.value.act
        }
        return depth
    }

    /// The claim as JSON (`{"sub": …, "client_id": …, "act": {…}}`).
    static func json(_ actor: ActorClaim) -> JSONValue {
        var members: [String: JSONValue] = ["sub": .string(actor.sub)]
        if let clientID = actor.clientID { members["client_id"] = .string(clientID) }
        if let nested = actor.act { members["act"] = json(nested.value) }
        return .object(members)
    }
}
