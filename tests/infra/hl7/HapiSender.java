// The hospital's MLLP sender for Relais' HL7 v2 tests: HAPI HL7 v2's client (nobody at Relais wrote it) sends
// each file over one connection, waits for the ACK HAPI matches to it (MSA-2 = MSH-10), and prints one line per
// file: path, MSA-1, MSA-2, ERR-2 (tab separated), or "path\tERROR\tclass" when HAPI could not send or read.
//
// Usage: java -cp <hapi jars>:<dir> HapiSender HOST PORT LISTFILE [CA_PEM CLIENT_CERT_PEM CLIENT_KEY_PKCS8_DER]
// LISTFILE holds one message path per line. The files are read as bytes and decoded per MSH-18, as a hospital's
// system would hold them; HAPI's lower layer encodes each message on the wire per MSH-18 too.

import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.Connection;
import ca.uhn.hl7v2.app.Initiator;
import ca.uhn.hl7v2.llp.MinLowerLayerProtocol;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;

import java.io.ByteArrayInputStream;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public final class HapiSender {
    private HapiSender() {}

    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        List<String> files = Files.readAllLines(Path.of(args[2]), StandardCharsets.UTF_8);
        boolean tls = args.length >= 6;
        if (tls) {
            SSLContext.setDefault(sslContext(Path.of(args[3]), Path.of(args[4]), Path.of(args[5])));
        }
        HapiContext context = new DefaultHapiContext();
        context.setValidationContext(ValidationContextFactory.noValidation());
        // true: the lower layer encodes each message in the character set its MSH-18 names.
        context.setLowerLayerProtocol(new MinLowerLayerProtocol(true));
        PipeParser parser = context.getPipeParser();
        Connection connection = context.newClient(host, port, tls);
        Initiator initiator = connection.getInitiator();
        initiator.setTimeout(30, TimeUnit.SECONDS);
        for (String file : files) {
            if (file.isBlank()) {
                continue;
            }
            try {
                Message message = parser.parse(read(Path.of(file)));
                Message ack = initiator.sendAndReceive(message);
                Terser terser = new Terser(ack);
                String err = ack.getAll("ERR").length > 0 ? terser.get("/ERR-2-1") + "-" + terser.get("/ERR-2-3") : "";
                System.out.println(file + "\t" + terser.get("/MSA-1") + "\t" + terser.get("/MSA-2") + "\t" + err);
            } catch (Exception e) {
                System.out.println(file + "\tERROR\t" + e.getClass().getSimpleName());
            }
            System.out.flush();
        }
        connection.close();
        context.close();
    }

    // The message text, decoded per its MSH-18 (PAM France: UNICODE UTF-8, 8859/1, 8859/15); CR segments.
    private static String read(Path path) throws Exception {
        byte[] bytes = Files.readAllBytes(path);
        String ascii = new String(bytes, StandardCharsets.ISO_8859_1);
        String msh = ascii.split("[\r\n]", 2)[0];
        String[] fields = msh.split("\\|", -1);
        String charset = fields.length > 17 ? fields[17].trim().toUpperCase() : "";
        Charset decoding = StandardCharsets.UTF_8;
        if (charset.equals("8859/1")) {
            decoding = StandardCharsets.ISO_8859_1;
        } else if (charset.equals("8859/15")) {
            decoding = Charset.forName("ISO-8859-15");
        }
        return new String(bytes, decoding).replace("\r\n", "\r").replace("\n", "\r");
    }

    private static SSLContext sslContext(Path caPem, Path certPem, Path keyDer) throws Exception {
        CertificateFactory factory = CertificateFactory.getInstance("X.509");
        Certificate ca = factory.generateCertificate(new ByteArrayInputStream(Files.readAllBytes(caPem)));
        Certificate cert = factory.generateCertificate(new ByteArrayInputStream(Files.readAllBytes(certPem)));
        PrivateKey key = KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(Files.readAllBytes(keyDer)));
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        trust.setCertificateEntry("ca", ca);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        KeyStore keys = KeyStore.getInstance(KeyStore.getDefaultType());
        keys.load(null, null);
        char[] password = "relais-test".toCharArray();
        keys.setKeyEntry("client", key, password, new Certificate[] {cert, ca});
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, password);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return context;
    }
}
