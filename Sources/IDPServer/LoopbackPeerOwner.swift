import Foundation
import NIOCore

/// Who owns the other end of a loopback TCP connection: the user ID of the socket the peer
/// connected from, as the kernel lists it in `/proc/net/tcp` (Linux).
///
/// tsidp's serve-proxy listener believes a request's forwarded headers only when the connection
/// comes from tailscaled, and on loopback the only thing that tells tailscaled's proxy from
/// another local program is the owner of the connecting socket.
public enum LoopbackPeerOwner {
    /// The owner's user ID of the socket at `peer` connected to `local`, or nil when the kernel
    /// does not list it (not Linux, not IPv4, the connection already closed).
    public static func uid(peer: SocketAddress?, local: SocketAddress?, table: String = "/proc/net/tcp") -> UInt32? {
        guard let peer, let local, let peerIP = peer.ipAddress, let peerPort = peer.port,
            let localIP = local.ipAddress, let localPort = local.port,
            let peerKey = key(ip: peerIP, port: peerPort), let localKey = key(ip: localIP, port: localPort),
            let data = readWhole(table)
        else { return nil }
        return find(in: String(decoding: data, as: UTF8.self), from: peerKey, to: localKey)
    }

    /// The whole of a `/proc` file. Such files report a size of 0 and hand out their content a
    /// page at a time, so they are read until `read` says there is no more (a single read, as
    /// some file APIs do, sees only the first rows).
    static func readWhole(_ path: String) -> Data? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var result = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return result }
            result.append(contentsOf: buffer[0..<count])
        }
    }

    /// The `/proc/net/tcp` spelling of an IPv4 address and port: the address as the kernel's
    /// 32-bit value in this machine's byte order, then the port, both in upper-case hex.
    static func key(ip: String, port: Int) -> String? {
        let parts = ip.split(separator: ".").compactMap { UInt8($0) }
        guard parts.count == 4, (0...65535).contains(port) else { return nil }
        #if _endian(big)
            let ordered = parts
        #else
            let ordered = parts.reversed()
        #endif
        return ordered.map { String(format: "%02X", $0) }.joined() + ":" + String(format: "%04X", port)
    }

    /// The owner of the row whose local address is `from` and remote address is `to`.
    static func find(in table: String, from: String, to: String) -> UInt32? {
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            guard fields.count > 7, fields[1] == from, fields[2] == to else { continue }
            return UInt32(fields[7])
        }
        return nil
    }
}
