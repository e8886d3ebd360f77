/// A core/v1 Event about the pod, the way `kubectl describe pod` shows it.
public struct KubeEvent: Sendable, Equatable, Codable {
    public struct Metadata: Sendable, Equatable, Codable {
        public var name: String
        public var namespace: String?
    }

    public struct Source: Sendable, Equatable, Codable {
        public var component: String?
    }

    /// The object the event is about: the pod tsidp runs in.
    public struct InvolvedObject: Sendable, Equatable, Codable {
        public var kind: String?
        public var namespace: String?
        public var name: String?
        public var uid: String?
        public var apiVersion: String?
    }

    public var metadata: Metadata
    public var message: String?
    public var reason: String?
    public var source: Source?
    /// `Normal` or `Warning`.
    public var type: String?
    public var involvedObject: InvolvedObject?
    /// How many times it happened.
    public var count: Int?
    public var firstTimestamp: String?
    public var lastTimestamp: String?

    public init(
        name: String, namespace: String, reason: String, type: String, message: String, pod: InvolvedObject,
        count: Int, timestamp: String
    ) {
        metadata = Metadata(name: name, namespace: namespace)
        self.message = message
        self.reason = reason
        source = Source(component: "tsidp-state-store")
        self.type = type
        involvedObject = pod
        self.count = count
        firstTimestamp = timestamp
        lastTimestamp = timestamp
    }
}
